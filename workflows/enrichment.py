"""`EnrichmentWorkflow`: a tool over every row of a knowledge set, a batch activity at a time.

Each batch runs many rows concurrently inside one activity and returns counts only, so 50,000
rows cost a few hundred activities; the run continues as new every `BATCHES_PER_RUN` batches
(or sooner when Temporal suggests it) with its cursor and counts carried over. Progress shows
in the Temporal UI's current details and, written by the batches, in the job's row."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.enrichment import (
        BATCHES_PER_RUN,
        BatchOutcome,
        EnrichmentBatch,
        EnrichmentFinish,
        EnrichmentInput,
        EnrichmentPlan,
        EnrichmentProgress,
    )
    from baton.domain.knowledge import JobStatus
    from baton.search_attributes import BATON_STATUS
    from workflows import policies

# A `workflow.patched` id: a failed job ends Failed (it used to complete), with this type.
FAIL_FAILED_JOBS = "fail-failed-enrichments"
JOB_FAILED = "EnrichmentFailed"


@workflow.defn(name="EnrichmentWorkflow")
class EnrichmentWorkflow:
    def __init__(self) -> None:
        self._progress = EnrichmentProgress()

    @workflow.run
    async def run(self, job: EnrichmentInput) -> EnrichmentProgress:
        plan, self._progress = job.plan, job.progress
        workflow.upsert_search_attributes([BATON_STATUS.value_set(JobStatus.running.value)])
        self._show()
        try:
            batches_this_run = 0
            while True:
                outcome = await self._batch(plan)
                self._advance(outcome)
                batches_this_run += 1
                if outcome.exhausted:
                    break
                if (
                    batches_this_run >= BATCHES_PER_RUN
                    or workflow.info().is_continue_as_new_suggested()
                ):
                    workflow.continue_as_new(EnrichmentInput(plan=plan, progress=self._progress))
        except asyncio.CancelledError:
            # The batch wrote the rows it finished and their counts before it stopped.
            await self._finish(plan, JobStatus.cancelled, progress=None)
            raise
        except ActivityError as exc:
            error = _cause(exc)
            await self._finish(plan, JobStatus.failed, progress=None, error=error)
            if workflow.patched(FAIL_FAILED_JOBS):
                # Failed in Temporal too, once the job's row says why: the UI's status
                # filter and `ExecutionStatus="Failed"` find it.
                raise ApplicationError(error, type=JOB_FAILED, non_retryable=True) from None
            return self._progress
        await self._finish(plan, JobStatus.succeeded, progress=self._progress)
        return self._progress

    @workflow.query
    def progress(self) -> EnrichmentProgress:
        return self._progress

    async def _batch(self, plan: EnrichmentPlan) -> BatchOutcome:
        try:
            outcome: BatchOutcome = await workflow.execute_activity(
                activity_names.ENRICHMENT_BATCH,
                EnrichmentBatch(plan=plan, progress=self._progress),
                result_type=BatchOutcome,
                start_to_close_timeout=policies.ENRICHMENT_BATCH_TIMEOUT,
                heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                retry_policy=policies.BATCH_RETRY,
                # Let the batch write what it finished before the job is marked cancelled.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"rows after {self._progress.after_row_id}",
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise asyncio.CancelledError() from exc
            raise
        return outcome

    def _advance(self, outcome: BatchOutcome) -> None:
        progress = self._progress
        progress.after_row_id = outcome.last_row_id
        progress.done += outcome.done
        progress.failed += outcome.failed
        progress.batches += 1
        self._show()

    def _show(self) -> None:
        progress = self._progress
        workflow.set_current_details(
            f"{progress.done + progress.failed} of {progress.total} rows, "
            f"{progress.failed} failed, batch {progress.batches}"
        )

    async def _finish(
        self,
        plan: EnrichmentPlan,
        status: JobStatus,
        *,
        progress: EnrichmentProgress | None,
        error: str | None = None,
    ) -> None:
        workflow.upsert_search_attributes([BATON_STATUS.value_set(status.value)])
        workflow.set_current_details(status.value)
        await workflow.execute_local_activity(
            activity_names.ENRICHMENT_FINISH,
            EnrichmentFinish(job_id=plan.job_id, status=status, progress=progress, error=error),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"job {status.value}",
        )


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
