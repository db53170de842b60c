"""`KnowledgeSourceSyncWorkflow`: one sync of a knowledge source, started by its Temporal
Schedule (`knowledge-source-<id>`) or by `POST .../sources/{id}/sync`. It lists the
source's documents, writes them a batch per activity (each heartbeating, resumable where it
stopped) and records the outcome on the source. A source that cannot be listed, or a
document that cannot be fetched, fails the sync with the reason and keeps the rows it had."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.knowledge_sources import (
        PAGES_PER_BATCH,
        SourceSyncInput,
        SyncBatch,
        SyncBatchResult,
        SyncCounts,
        SyncEnd,
        SyncPlan,
    )
    from workflows import policies

# The reasons recorded on a source whose documents failed, the rest only counted.
ERRORS_SHOWN = 5


@workflow.defn(name="KnowledgeSourceSyncWorkflow")
class KnowledgeSourceSyncWorkflow:
    @workflow.run
    async def run(self, params: SourceSyncInput) -> SyncCounts:
        counts, errors = SyncCounts(), list[str]()
        try:
            plan: SyncPlan = await workflow.execute_activity(
                activity_names.SOURCE_PLAN,
                params,
                result_type=SyncPlan,
                start_to_close_timeout=policies.SOURCE_BATCH_TIMEOUT,
                heartbeat_timeout=policies.SOURCE_HEARTBEAT_TIMEOUT,
                retry_policy=policies.SOURCE_RETRY,
                summary="list the source's documents",
            )
            if plan.gone:
                return counts
            counts = plan.counts
            if plan.error:
                errors.append(plan.error)
            for start in range(0, len(plan.urls), PAGES_PER_BATCH):
                urls = plan.urls[start : start + PAGES_PER_BATCH]
                workflow.set_current_details(f"documents {start + 1}-{start + len(urls)}")
                result: SyncBatchResult = await workflow.execute_activity(
                    activity_names.SOURCE_SYNC_BATCH,
                    SyncBatch(project_id=params.project_id, source_id=params.source_id, urls=urls),
                    result_type=SyncBatchResult,
                    start_to_close_timeout=policies.SOURCE_BATCH_TIMEOUT,
                    heartbeat_timeout=policies.SOURCE_HEARTBEAT_TIMEOUT,
                    retry_policy=policies.SOURCE_RETRY,
                    summary=f"fetch {len(urls)} documents",
                )
                counts = counts.plus(result.counts)
                errors.extend(result.errors)
        except ActivityError as exc:
            errors.append(str(exc.cause or exc))
        error = None
        if errors:
            more = len(errors) - ERRORS_SHOWN
            error = "; ".join(errors[:ERRORS_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        workflow.set_current_details(error or "synced")
        await workflow.execute_activity(
            activity_names.SOURCE_FINISH,
            SyncEnd(
                project_id=params.project_id,
                source_id=params.source_id,
                counts=counts,
                error=error,
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
        )
        return counts
