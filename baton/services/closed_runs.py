"""Runs that Temporal ended without their workflow saying so get a final status in Baton too.

A workflow writes its run's final status as its last act. A run terminated in Temporal (the
UI's Terminate button, `temporal workflow terminate`, a run timeout) executes no more code, so
its row would say `running` for ever. These functions read how Temporal closed the run and
write the matching final status, only over a status that is not final yet: a workflow that
did finish properly always wins. The API settles a run when it is read; the worker sweeps
recently closed runs, so lists and streams settle too."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.tables import utcnow
from baton.domain.events import EventDraft, EventType
from baton.domain.tasks import TaskStatus
from baton.domain.tools import ToolRunStatus

logger = logging.getLogger("baton.closed_runs")

QUIET_FOR = timedelta(seconds=10)

_HOW = {
    WorkflowExecutionStatus.TERMINATED: "the run was terminated in Temporal",
    WorkflowExecutionStatus.CANCELED: "the run was cancelled in Temporal",
    WorkflowExecutionStatus.TIMED_OUT: "the run reached its Temporal timeout",
    WorkflowExecutionStatus.FAILED: "the run's workflow failed in Temporal",
}
_TASK_STATUS = {
    WorkflowExecutionStatus.TERMINATED: TaskStatus.cancelled,
    WorkflowExecutionStatus.CANCELED: TaskStatus.cancelled,
    WorkflowExecutionStatus.TIMED_OUT: TaskStatus.timed_out,
    WorkflowExecutionStatus.FAILED: TaskStatus.failed,
}
_TOOL_RUN_STATUS = {
    WorkflowExecutionStatus.TERMINATED: ToolRunStatus.cancelled,
    WorkflowExecutionStatus.CANCELED: ToolRunStatus.cancelled,
    WorkflowExecutionStatus.TIMED_OUT: ToolRunStatus.failed,
    WorkflowExecutionStatus.FAILED: ToolRunStatus.failed,
}
_OPEN_TASK = [s.value for s in TaskStatus if not s.is_final]
_OPEN_TOOL_RUN = [s.value for s in ToolRunStatus if not s.is_final]
# A visibility query for closed runs of the kinds settled here whose last status was open:
# a run that ended properly upserted its final status, so it is not listed again and again.
_CLOSED_QUERY = (
    "ExecutionStatus IN ('Terminated', 'Canceled', 'TimedOut', 'Failed') "
    "AND BatonKind IN ('agent-task', 'workforce-task', 'tool-run') "
    f"AND BatonStatus IN ({', '.join(repr(s) for s in sorted({*_OPEN_TASK, *_OPEN_TOOL_RUN}))}) "
    "AND CloseTime > '{since}'"
)


async def settle(
    *, session: AsyncSession, workflow_id: str, closed: WorkflowExecutionStatus
) -> bool:
    """Writes the final status that `closed` means, if the run's row is still open; True if
    it wrote one. The caller commits."""
    how = _HOW.get(closed)
    if how is None:
        return False  # running, completed or continued: the workflow speaks for itself
    if workflow_id.startswith(("task-", "workforce-task-")):
        return await _settle_task(session, workflow_id, _TASK_STATUS[closed], how)
    if workflow_id.startswith("tool-run-"):
        return await run_repo.close_open_run(
            session=session, workflow_id=workflow_id, status=_TOOL_RUN_STATUS[closed], error=how
        )
    return False


async def _settle_task(
    session: AsyncSession, workflow_id: str, status: TaskStatus, how: str
) -> bool:
    task_id = await task_repo.close_open_task(
        session=session, workflow_id=workflow_id, status=status, error=how
    )
    if task_id is None:
        return False
    # The stream ends as it would have had the workflow ended the task itself.
    await event_repo.append_events(
        session=session,
        task_id=task_id,
        events=[
            EventDraft(
                type=EventType.task_status,
                data={"status": status.value, "error": how},
                key="status:closed-in-temporal",
            )
        ],
    )
    return True


async def settle_if_closed(
    *, client: Client, session: AsyncSession, workflow_id: str, updated_at: datetime
) -> bool:
    """Asks Temporal whether the run is closed and settles it if so; True if it wrote. A row
    that changed in the last QUIET_FOR is being written by its workflow: a client polling it
    costs no round trip to Temporal."""
    stamp = updated_at if updated_at.tzinfo is not None else updated_at.replace(tzinfo=UTC)
    if utcnow() - stamp < QUIET_FOR:
        return False
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False  # not started yet, or Temporal is away: nothing to settle now
    if description.status is None:
        return False
    return await settle(session=session, workflow_id=workflow_id, closed=description.status)


async def settle_closed_since(
    *, client: Client, session_factory: async_sessionmaker[AsyncSession], since: datetime
) -> int:
    """Settles every task and tool run that Temporal closed after `since`; how many it wrote."""
    settled = 0
    query = _CLOSED_QUERY.format(since=since.isoformat())
    async for execution in client.list_workflows(query):
        if execution.status is None:
            continue
        async with session_factory.begin() as session:
            if await settle(session=session, workflow_id=execution.id, closed=execution.status):
                settled += 1
                logger.info("settled %s: %s", execution.id, _HOW[execution.status])
    return settled
