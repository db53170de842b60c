"""The concurrency quota in the database (baton/domain/capacity.py): who holds a slot, who
waits, and handing free slots to the oldest waiters.

Every change first locks the organisation's row with a write (`UPDATE organizations ...
WHERE id = ?`), before it writes any task row: on PostgreSQL that row lock serialises the
admissions of one organisation across API replicas and workers (always taken first, so two
of them never wait on each other); on SQLite the write takes the database's write lock, so
the counts read after it are the latest. Either way two transactions never both see the same
free slot."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import Organization, Project, Task
from baton.domain.capacity import Capacity
from baton.domain.credits import PlanBook
from baton.domain.tasks import TaskStatus
from baton.errors import NotFound

_FINAL = [s.value for s in TaskStatus if s.is_final]


async def claim(
    *, session: AsyncSession, plans: PlanBook, task_id: str, project_id: str
) -> tuple[bool, list[str]]:
    """A task that begins asks for a slot: whether it must wait, and the workflow ids of
    the other tasks given a slot meanwhile (after a plan change, say), to be told. Without a
    limit on the organisation's plan nothing is written and nothing waits. Repeated (a
    retried activity), it answers the same."""
    org_id, limit = await _org_limit(session, plans, project_id)
    if limit is None:
        return False, []
    await _lock(session, org_id)
    await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.capacity.is_(None))
        .values(capacity=Capacity.waiting.value)
    )
    admitted = await _fill(session, org_id, limit)
    mine = await _capacity_of(session, task_id)
    others = [workflow_id for workflow_id, other in admitted if other != task_id]
    return mine == Capacity.waiting, others


async def admit(*, session: AsyncSession, plans: PlanBook, task_id: str) -> tuple[bool, list[str]]:
    """A waiting task asks again: whether it holds a slot now, and the workflow ids of the
    others given one with it (a raised limit frees several at once)."""
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    org_id, limit = await _org_limit(session, plans, task.project_id)
    await _lock(session, org_id)
    admitted = await _fill(session, org_id, limit)
    mine = await _capacity_of(session, task_id)
    others = [workflow_id for workflow_id, other in admitted if other != task_id]
    return mine != Capacity.waiting, others


async def release(*, session: AsyncSession, plans: PlanBook, task_id: str) -> list[str]:
    """A task that ends gives back its slot (a waiting one gives back its place) and the
    oldest waiters fill what is free: their workflow ids, to be told. A task that held
    nothing (no quota, or released already) changes nothing. Called before the task's final
    status is written, so the organisation's lock comes before the task row's."""
    held = await _capacity_of(session, task_id)
    if held not in (Capacity.waiting, Capacity.holding):
        return []
    project_id = (
        await session.execute(select(Task.project_id).where(Task.id == task_id))
    ).scalar_one()
    org_id, limit = await _org_limit(session, plans, project_id)
    await _lock(session, org_id)
    await session.execute(
        update(Task).where(Task.id == task_id).values(capacity=Capacity.released.value)
    )
    return [workflow_id for workflow_id, _ in await _fill(session, org_id, limit)]


async def _fill(session: AsyncSession, org_id: int, limit: int | None) -> list[tuple[str, str]]:
    """Gives the free slots to the oldest waiting tasks (first come, first served by
    creation time): their (workflow id, task id). A task that holds or waits but has a final
    status (a run settled after Temporal ended it) counts for nothing. The caller holds the
    organisation's lock."""
    org_tasks = (
        select(Task.id)
        .join(Project, Project.id == Task.project_id)
        .where(Project.org_id == org_id, Task.status.not_in(_FINAL))
    )
    holding = (
        await session.execute(
            select(func.count()).select_from(
                org_tasks.where(Task.capacity == Capacity.holding.value).subquery()
            )
        )
    ).scalar_one()
    waiters = (
        select(Task.workflow_id, Task.id)
        .join(Project, Project.id == Task.project_id)
        .where(
            Project.org_id == org_id,
            Task.status.not_in(_FINAL),
            Task.capacity == Capacity.waiting.value,
        )
        .order_by(Task.created_at, Task.id)
    )
    if limit is not None:
        free = limit - holding
        if free <= 0:
            return []
        waiters = waiters.limit(free)
    admitted = [(workflow_id, task_id) for workflow_id, task_id in await session.execute(waiters)]
    if admitted:
        await session.execute(
            update(Task)
            .where(Task.id.in_([task_id for _, task_id in admitted]))
            .values(capacity=Capacity.holding.value)
        )
    return admitted


async def _lock(session: AsyncSession, org_id: int) -> None:
    """The organisation's row lock, by a write that changes nothing: the one statement that
    locks on both PostgreSQL and SQLite (where SELECT ... FOR UPDATE locks nothing)."""
    await session.execute(
        update(Organization).where(Organization.id == org_id).values(plan=Organization.plan)
    )


async def _org_limit(
    session: AsyncSession, plans: PlanBook, project_id: str
) -> tuple[int, int | None]:
    found = (
        await session.execute(
            select(Organization.id, Organization.plan)
            .join(Project, Project.org_id == Organization.id)
            .where(Project.id == project_id)
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"project {project_id} not found")
    org_id, plan = found
    return org_id, plans.plan(plan).max_concurrent_tasks


async def _capacity_of(session: AsyncSession, task_id: str) -> str | None:
    return (
        await session.execute(select(Task.capacity).where(Task.id == task_id))
    ).scalar_one_or_none()
