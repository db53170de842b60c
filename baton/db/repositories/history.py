"""Deleting an organisation's finished tasks and tool runs older than its plan keeps them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import Organization, Project, Task, ToolRun
from baton.domain.tasks import TaskStatus
from baton.domain.tools import ToolRunStatus

_FINISHED_TASKS = [s.value for s in TaskStatus if s.is_final]
_FINISHED_RUNS = [s.value for s in ToolRunStatus if s.is_final]


async def org_plans(*, session: AsyncSession) -> dict[int, str | None]:
    """Every organisation's plan (None: the installation's default)."""
    rows = await session.execute(select(Organization.id, Organization.plan))
    return {org_id: plan for org_id, plan in rows}


async def delete_finished_tasks(
    *, session: AsyncSession, org_id: int, before: datetime, limit: int
) -> int:
    """Deletes up to `limit` of the organisation's tasks that finished before `before`, with
    their messages, events and the tasks under them (the foreign keys cascade); a task under
    another goes with the one it works for, never while that one runs. How many it deleted."""
    ids = (
        await session.scalars(
            select(Task.id)
            .join(Project, Project.id == Task.project_id)
            .where(
                Project.org_id == org_id,
                Task.parent_task_id.is_(None),
                Task.status.in_(_FINISHED_TASKS),
                Task.updated_at < before,
            )
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    await session.execute(delete(Task).where(Task.id.in_(ids)))
    return len(ids)


async def delete_finished_runs(
    *, session: AsyncSession, org_id: int, before: datetime, limit: int
) -> int:
    """Deletes up to `limit` of the organisation's tool runs that finished before `before`,
    with their step records; how many it deleted."""
    ids = (
        await session.scalars(
            select(ToolRun.id)
            .join(Project, Project.id == ToolRun.project_id)
            .where(
                Project.org_id == org_id,
                ToolRun.status.in_(_FINISHED_RUNS),
                ToolRun.updated_at < before,
            )
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    await session.execute(delete(ToolRun).where(ToolRun.id.in_(ids)))
    return len(ids)
