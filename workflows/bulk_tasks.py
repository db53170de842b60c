"""`BulkTaskWorkflow`: one agent task per row of a knowledge set, `per_interval` rows every
`interval_seconds`, within the run's working hours.

Each batch is one activity that starts its rows' tasks and returns counts only; between
batches the workflow sleeps on a durable timer, and outside the working hours until the next
window opens. It continues as new every `BATCHES_PER_RUN` batches (or sooner when Temporal
suggests it). A cancel stops the rows not yet started; tasks already started go on."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.bulk_tasks import (
        BATCHES_PER_RUN,
        BulkBatch,
        BulkBatchOutcome,
        BulkPlan,
        BulkProgress,
        BulkStatus,
        BulkStatusUpdate,
        BulkTaskInput,
    )
    from baton.search_attributes import BATON_STATUS
    from workflows import policies

RUN_FAILED = "BulkTasksFailed"


@workflow.defn(name="BulkTaskWorkflow")
class BulkTaskWorkflow:
    def __init__(self) -> None:
        self._progress = BulkProgress()
        self._status = BulkStatus.queued

    @workflow.run
    async def run(self, run: BulkTaskInput) -> BulkProgress:
        plan, self._progress = run.plan, run.progress
        try:
            batches_this_run = 0
            while True:
                await self._within_hours(plan)
                began = workflow.now()
                outcome = await self._batch(plan)
                self._advance(outcome)
                batches_this_run += 1
                if outcome.remaining == 0:
                    break
                pause = began + timedelta(seconds=plan.interval_seconds) - workflow.now()
                if pause > timedelta(0):
                    await workflow.sleep(pause, summary="until the next batch")
                if (
                    batches_this_run >= BATCHES_PER_RUN
                    or workflow.info().is_continue_as_new_suggested()
                ):
                    workflow.continue_as_new(BulkTaskInput(plan=plan, progress=self._progress))
        except asyncio.CancelledError:
            await self._set_status(plan, BulkStatus.cancelled)
            raise
        except ActivityError as exc:
            error = _cause(exc)
            await self._set_status(plan, BulkStatus.failed, error=error)
            raise ApplicationError(error, type=RUN_FAILED, non_retryable=True) from None
        await self._set_status(plan, BulkStatus.completed)
        return self._progress

    @workflow.query
    def progress(self) -> BulkProgress:
        return self._progress

    async def _within_hours(self, plan: BulkPlan) -> None:
        """Sleeps (a durable timer) while outside the working hours."""
        hours = plan.working_hours
        while hours is not None and (opens := hours.next_opening(workflow.now())) is not None:
            await self._set_status(plan, BulkStatus.waiting, waiting_until=opens)
            await workflow.sleep(opens - workflow.now(), summary=f"until {opens.isoformat()}")
        if self._status is not BulkStatus.running:
            await self._set_status(plan, BulkStatus.running)

    async def _batch(self, plan: BulkPlan) -> BulkBatchOutcome:
        try:
            outcome: BulkBatchOutcome = await workflow.execute_activity(
                activity_names.BULK_START_BATCH,
                BulkBatch(bulk_id=plan.bulk_id, limit=plan.per_interval),
                result_type=BulkBatchOutcome,
                start_to_close_timeout=policies.BULK_BATCH_TIMEOUT,
                heartbeat_timeout=policies.BATCH_HEARTBEAT_TIMEOUT,
                retry_policy=policies.BATCH_RETRY,
                # Let a cancelled batch give back the rows it claimed before the run ends.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"start {plan.per_interval} tasks, batch {self._progress.batches + 1}",
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise asyncio.CancelledError() from exc
            raise
        return outcome

    def _advance(self, outcome: BulkBatchOutcome) -> None:
        progress = self._progress
        progress.started += outcome.started
        progress.failed += outcome.failed
        progress.batches += 1
        workflow.set_current_details(
            f"{progress.started} tasks started, {progress.failed} rows failed, "
            f"{outcome.remaining} to go, batch {progress.batches}"
        )

    async def _set_status(
        self,
        plan: BulkPlan,
        status: BulkStatus,
        *,
        waiting_until: datetime | None = None,
        error: str | None = None,
    ) -> None:
        self._status = status
        workflow.upsert_search_attributes([BATON_STATUS.value_set(status.value)])
        details = f"waiting until {waiting_until.isoformat()}" if waiting_until else status.value
        workflow.set_current_details(details)
        await workflow.execute_local_activity(
            activity_names.BULK_SET_STATUS,
            BulkStatusUpdate(
                bulk_id=plan.bulk_id, status=status, waiting_until=waiting_until, error=error
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"bulk run {status.value}",
        )


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
