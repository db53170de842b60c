"""Bulk runs and their rows. Every write of `bulk_task_runs` and `bulk_task_rows` is here: the
API creates a run with its rows; the run's workflow claims rows, records their tasks and its
own status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import BulkTaskRow, BulkTaskRun, Task, utcnow
from baton.domain.bulk_tasks import BulkStatus, RowProgress, RowState, row_progress
from baton.errors import NotFound

INSERT_ROWS = 1000
PENDING = (RowState.upcoming.value, RowState.starting.value)


def bulk_workflow_id(bulk_id: str) -> str:
    return f"bulk-tasks-{bulk_id}"


async def create_run(
    *,
    session: AsyncSession,
    bulk_id: str,
    project_id: str,
    agent_id: str,
    set_id: str,
    params: dict[str, Any],
    row_ids: Sequence[int],
) -> BulkTaskRun:
    run = BulkTaskRun(
        id=bulk_id,
        project_id=project_id,
        agent_id=agent_id,
        set_id=set_id,
        workflow_id=bulk_workflow_id(bulk_id),
        params=params,
        status=BulkStatus.queued.value,
        total=len(row_ids),
    )
    session.add(run)
    await session.flush()
    for start in range(0, len(row_ids), INSERT_ROWS):
        await session.execute(
            insert(BulkTaskRow),
            [
                {"bulk_id": bulk_id, "row_id": row_id, "state": RowState.upcoming.value}
                for row_id in row_ids[start : start + INSERT_ROWS]
            ],
        )
    return run


async def get_run(
    *, session: AsyncSession, project_id: str, agent_id: str, bulk_id: str
) -> BulkTaskRun:
    run = await session.get(BulkTaskRun, bulk_id)
    if run is None or run.project_id != project_id or run.agent_id != agent_id:
        raise NotFound(f"no bulk run {bulk_id!r} of this agent")
    return run


async def get_run_by_id(*, session: AsyncSession, bulk_id: str) -> BulkTaskRun:
    run = await session.get(BulkTaskRun, bulk_id)
    if run is None:
        raise NotFound(f"no bulk run {bulk_id!r}")
    return run


async def list_runs(
    *, session: AsyncSession, project_id: str, agent_id: str, page: PageRequest = ALL
) -> Paged[BulkTaskRun]:
    """Newest first."""
    query = select(BulkTaskRun).where(
        BulkTaskRun.project_id == project_id, BulkTaskRun.agent_id == agent_id
    )
    order = (Key(BulkTaskRun.created_at, descending=True), BulkTaskRun.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def row_counts(*, session: AsyncSession, bulk_id: str) -> dict[RowProgress, int]:
    """How many of the run's rows are upcoming, in progress, processed, failed, cancelled."""
    query = (
        select(BulkTaskRow.state, Task.status, func.count())
        .select_from(BulkTaskRow)
        .outerjoin(Task, Task.id == BulkTaskRow.task_id)
        .where(BulkTaskRow.bulk_id == bulk_id)
        .group_by(BulkTaskRow.state, Task.status)
    )
    counts = dict.fromkeys(RowProgress, 0)
    for state, task_status, count in await session.execute(query):
        counts[row_progress(RowState(state), task_status)] += count
    return counts


async def list_rows(
    *, session: AsyncSession, bulk_id: str, page: PageRequest
) -> Paged[tuple[BulkTaskRow, str | None]]:
    """The run's rows in row order, each with its task's status (None before it starts)."""
    query = (
        select(BulkTaskRow, Task.status)
        .outerjoin(Task, Task.id == BulkTaskRow.task_id)
        .where(BulkTaskRow.bulk_id == bulk_id)
    )
    paged = await fetch_page(session=session, query=query, order=(BulkTaskRow.row_id,), page=page)
    return Paged([(row, status) for row, status in paged.items], paged.next_cursor)


async def claim_rows(*, session: AsyncSession, bulk_id: str, limit: int) -> list[int]:
    """The next `limit` rows to start, claimed (`starting`): rows a crashed batch had claimed
    come first again; a row cancelled meanwhile is never claimed."""
    query = (
        select(BulkTaskRow.row_id)
        .where(BulkTaskRow.bulk_id == bulk_id, BulkTaskRow.state.in_(PENDING))
        .order_by(BulkTaskRow.row_id)
        .limit(limit)
    )
    row_ids = list((await session.scalars(query)).all())
    if not row_ids:
        return []
    await session.execute(
        update(BulkTaskRow)
        .where(
            BulkTaskRow.bulk_id == bulk_id,
            BulkTaskRow.row_id.in_(row_ids),
            BulkTaskRow.state == RowState.upcoming.value,
        )
        .values(state=RowState.starting.value)
        .execution_options(synchronize_session=False)
    )
    claimed = select(BulkTaskRow.row_id).where(
        BulkTaskRow.bulk_id == bulk_id,
        BulkTaskRow.row_id.in_(row_ids),
        BulkTaskRow.state == RowState.starting.value,
    )
    return sorted((await session.scalars(claimed)).all())


async def record_row(
    *,
    session: AsyncSession,
    bulk_id: str,
    row_id: int,
    state: RowState,
    task_id: str | None = None,
    error: str | None = None,
) -> None:
    await session.execute(
        update(BulkTaskRow)
        .where(BulkTaskRow.bulk_id == bulk_id, BulkTaskRow.row_id == row_id)
        .values(state=state.value, task_id=task_id, error=error, started_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def release_claimed(*, session: AsyncSession, bulk_id: str, task_ids: dict[int, str]) -> None:
    """Rows a batch claimed and stopped before recording: started when their task exists
    (`task_ids` names the task each row's start would have), else upcoming again."""
    claimed = list(
        (
            await session.scalars(
                select(BulkTaskRow.row_id).where(
                    BulkTaskRow.bulk_id == bulk_id,
                    BulkTaskRow.row_id.in_(list(task_ids)),
                    BulkTaskRow.state == RowState.starting.value,
                )
            )
        ).all()
    )
    if not claimed:
        return
    existing = set(
        (
            await session.scalars(
                select(Task.id).where(Task.id.in_([task_ids[row_id] for row_id in claimed]))
            )
        ).all()
    )
    for row_id in claimed:
        started = task_ids[row_id] in existing
        await session.execute(
            update(BulkTaskRow)
            .where(BulkTaskRow.bulk_id == bulk_id, BulkTaskRow.row_id == row_id)
            .values(
                state=(RowState.started if started else RowState.upcoming).value,
                task_id=task_ids[row_id] if started else None,
                started_at=utcnow() if started else None,
            )
            .execution_options(synchronize_session=False)
        )


async def pending_count(*, session: AsyncSession, bulk_id: str) -> int:
    query = select(func.count()).where(
        BulkTaskRow.bulk_id == bulk_id, BulkTaskRow.state.in_(PENDING)
    )
    return int((await session.scalar(query)) or 0)


async def cancel_upcoming(*, session: AsyncSession, bulk_id: str) -> None:
    """Rows not claimed yet are cancelled; a claimed row's task is being started and is."""
    await session.execute(
        update(BulkTaskRow)
        .where(BulkTaskRow.bulk_id == bulk_id, BulkTaskRow.state == RowState.upcoming.value)
        .values(state=RowState.cancelled.value)
        .execution_options(synchronize_session=False)
    )


async def set_status(
    *,
    session: AsyncSession,
    bulk_id: str,
    status: BulkStatus,
    waiting_until: datetime | None = None,
    error: str | None = None,
) -> None:
    await session.execute(
        update(BulkTaskRun)
        .where(BulkTaskRun.id == bulk_id)
        .values(status=status.value, waiting_until=waiting_until, error=error, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
