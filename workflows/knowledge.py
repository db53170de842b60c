"""`EmbedSetWorkflow`: gives every row of a set its vector, a batch per activity, until none is
left. One run per set at a time (id `knowledge-embed-<set_id>`); rows added or changed while it
runs reach it by the `rows_changed` signal, which `embed_pending` sends with signal-with-start,
so a change is never left unembedded: Temporal refuses to complete a run that has a signal it
has not seen yet."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.knowledge import (
        EmbedBatch,
        EmbedBatchResult,
        EmbedJobEnd,
        EmbedProgress,
        EmbedSetInput,
        JobStatus,
    )
    from workflows import policies

# A batch is a few seconds of the local model on a CPU; a remote provider may be slow or
# rate-limited, which the retry policy waits out.
EMBED_BATCH_TIMEOUT = timedelta(minutes=10)
EMBED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=10,
)
# A `workflow.patched` id: failed jobs end Failed (they used to complete).
FAIL_FAILED_JOBS = "fail-failed-jobs"


@workflow.defn(name="EmbedSetWorkflow")
class EmbedSetWorkflow:
    def __init__(self) -> None:
        self._progress = EmbedProgress(job_id=None, status=JobStatus.queued, done=0, remaining=0)
        self._changed = False

    @workflow.run
    async def run(self, params: EmbedSetInput) -> EmbedProgress:
        self._params = params
        job_id = params.job_id or str(workflow.uuid4())
        self._progress.job_id = job_id
        self._progress.status = JobStatus.running
        batch = EmbedBatch(
            project_id=params.project_id,
            set_id=params.set_id,
            job_id=job_id,
            batch_size=params.batch_size,
        )
        try:
            while True:
                self._changed = False
                result: EmbedBatchResult = await workflow.execute_activity(
                    activity_names.EMBED_BATCH,
                    batch,
                    result_type=EmbedBatchResult,
                    start_to_close_timeout=EMBED_BATCH_TIMEOUT,
                    retry_policy=EMBED_RETRY,
                    summary=f"embed up to {params.batch_size} rows",
                )
                self._progress.done = result.done
                self._progress.remaining = result.remaining
                workflow.set_current_details(
                    f"embedded {result.done} rows, {result.remaining} to go"
                )
                if result.remaining == 0 and not self._changed:
                    break
                if workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(params.model_copy(update={"job_id": job_id}))
        except ActivityError as exc:
            self._progress.status = JobStatus.failed
            error = str(exc.cause or exc)
            await self._finish(job_id, JobStatus.failed, error=error)
            if workflow.patched(FAIL_FAILED_JOBS):
                # Failed in Temporal too, once the job's row says why.
                raise ApplicationError(error, type="EmbeddingFailed", non_retryable=True) from None
            return self._progress
        self._progress.status = JobStatus.succeeded
        await self._finish(job_id, JobStatus.succeeded)
        return self._progress

    @workflow.signal
    def rows_changed(self) -> None:
        """Rows were added or edited: look again before finishing."""
        self._changed = True

    @workflow.query
    def progress(self) -> EmbedProgress:
        return self._progress

    async def _finish(self, job_id: str, status: JobStatus, *, error: str | None = None) -> None:
        workflow.set_current_details(
            f"{status.value}: {self._progress.done} rows embedded"
            + (f" ({error})" if error else "")
        )
        await workflow.execute_activity(
            activity_names.EMBED_FINISH,
            EmbedJobEnd(
                job_id=job_id,
                status=status,
                error=error,
                project_id=self._params.project_id,
                set_id=self._params.set_id,
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
        )
