"""Tool runs and their per-step records: written by the run's activities, read by the API."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.idempotent import insert_once
from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.repositories import credits as credit_repo
from baton.db.tables import ToolRun, ToolRunStep, utcnow
from baton.domain.credits import PlanBook
from baton.domain.tool_runs import (
    RECORDED_OUTPUT_LIMIT,
    NewToolRun,
    StepRecord,
    tool_run_workflow_id,
)
from baton.domain.tools import ToolRunStatus
from baton.errors import NotFound


async def create_run(
    *,
    session: AsyncSession,
    run_id: str,
    project_id: str,
    tool_id: str,
    tool_version: int,
    params: dict[str, Any],
    source: str | None = None,
) -> ToolRun:
    """The run's row. Its action is charged in the same transaction, by the caller
    (`credits.charge_tool_run`, before this write: SQLite's write lock is taken later)."""
    run = ToolRun(
        id=run_id,
        source=source,
        project_id=project_id,
        tool_id=tool_id,
        tool_version=tool_version,
        workflow_id=tool_run_workflow_id(run_id),
        status=ToolRunStatus.queued.value,
        params=params,
    )
    session.add(run)
    await session.flush()
    return run


async def ensure_run(*, session: AsyncSession, new_run: NewToolRun, plans: PlanBook) -> None:
    """The row of a run a workflow starts, and its action, once however often its activity
    is retried."""
    if await session.get(ToolRun, new_run.run_id) is not None:
        return
    await credit_repo.charge_tool_run(
        session=session, plans=plans, project_id=new_run.project_id, run_id=new_run.run_id
    )
    await create_run(
        session=session,
        run_id=new_run.run_id,
        project_id=new_run.project_id,
        tool_id=new_run.tool_id,
        tool_version=new_run.tool_version,
        params=new_run.params,
    )


async def get_run(*, session: AsyncSession, project_id: str, run_id: str) -> ToolRun:
    run = await session.get(ToolRun, run_id)
    if run is None or run.project_id != project_id:
        raise NotFound(f"tool run {run_id} not found")
    return run


async def list_runs(
    *,
    session: AsyncSession,
    project_id: str,
    tool_id: str | None = None,
    page: PageRequest = ALL,
) -> Paged[ToolRun]:
    """Newest first."""
    query = select(ToolRun).where(ToolRun.project_id == project_id)
    if tool_id is not None:
        query = query.where(ToolRun.tool_id == tool_id)
    order = (Key(ToolRun.created_at, descending=True), ToolRun.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def list_steps(*, session: AsyncSession, run_id: str) -> list[ToolRunStep]:
    query = (
        select(ToolRunStep)
        .where(ToolRunStep.run_id == run_id)
        .order_by(ToolRunStep.position, ToolRunStep.item)
    )
    return list((await session.scalars(query)).all())


async def mark_running(*, session: AsyncSession, run_id: str) -> None:
    await session.execute(
        update(ToolRun)
        .where(ToolRun.id == run_id, ToolRun.status == ToolRunStatus.queued.value)
        .values(status=ToolRunStatus.running.value, updated_at=utcnow())
    )


async def put_step_records(
    *, session: AsyncSession, run_id: str, records: list[StepRecord]
) -> None:
    """Each (step, item) is written once; a retried activity repeats nothing."""
    now = utcnow()
    await insert_once(
        session,
        ToolRunStep,
        [
            {
                "run_id": run_id,
                "position": record.position,
                "item": record.item,
                "name": record.name,
                "type": record.type,
                "status": record.status.value,
                "output": capped(record.output),
                "error": record.error,
                "duration_ms": record.duration_ms,
                "created_at": now,
            }
            for record in records
        ],
        key=["run_id", "position", "item"],
    )


async def finish_run(
    *,
    session: AsyncSession,
    run_id: str,
    status: ToolRunStatus,
    output: Any,
    error: str | None,
) -> None:
    result = await session.execute(
        update(ToolRun)
        .where(ToolRun.id == run_id)
        .values(status=status.value, output=capped(output), error=error, updated_at=utcnow())
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"tool run {run_id} not found")


async def close_open_run(
    *, session: AsyncSession, workflow_id: str, status: ToolRunStatus, error: str
) -> bool:
    """Gives the run of `workflow_id` a final status unless it already has one; True if it
    wrote."""
    open_statuses = [s.value for s in ToolRunStatus if not s.is_final]
    result = await session.execute(
        update(ToolRun)
        .where(ToolRun.workflow_id == workflow_id, ToolRun.status.in_(open_statuses))
        .values(status=status.value, error=error, updated_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def capped(value: Any) -> Any:
    """Large outputs are kept as a truncated preview so the database stays small."""
    encoded = json.dumps(value, default=str)
    if len(encoded) <= RECORDED_OUTPUT_LIMIT:
        return value
    return {"truncated": True, "size": len(encoded), "preview": encoded[:RECORDED_OUTPUT_LIMIT]}
