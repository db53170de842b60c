"""Workforces of a project, and every version of each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import Task, Workforce, WorkforceVersion, utcnow
from baton.domain.tasks import TaskStatus
from baton.domain.workforces import AgentNode, ToolNode, WorkforceSpec
from baton.errors import NotFound


async def create_workforce(
    *, session: AsyncSession, project_id: str, spec: WorkforceSpec
) -> Workforce:
    workforce = Workforce(project_id=project_id, name=spec.name, spec=_dump(spec), version=1)
    session.add(workforce)
    await session.flush()
    session.add(WorkforceVersion(workforce_id=workforce.id, version=1, spec=workforce.spec))
    await session.flush()
    return workforce


async def list_workforces(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[Workforce]:
    query = select(Workforce).where(Workforce.project_id == project_id)
    order = (Workforce.created_at, Workforce.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def get_workforce(*, session: AsyncSession, project_id: str, workforce_id: str) -> Workforce:
    workforce = await session.get(Workforce, workforce_id)
    if workforce is None or workforce.project_id != project_id:
        raise NotFound(f"workforce {workforce_id} not found")
    return workforce


async def update_workforce(
    *, session: AsyncSession, project_id: str, workforce_id: str, spec: WorkforceSpec
) -> Workforce:
    """Saves `spec` as the workforce's next version; tasks already started keep theirs."""
    workforce = await get_workforce(
        session=session, project_id=project_id, workforce_id=workforce_id
    )
    workforce.name = spec.name
    workforce.spec = _dump(spec)
    workforce.version += 1
    workforce.updated_at = utcnow()
    session.add(
        WorkforceVersion(workforce_id=workforce.id, version=workforce.version, spec=workforce.spec)
    )
    await session.flush()
    return workforce


async def list_versions(
    *, session: AsyncSession, workforce_id: str, page: PageRequest = ALL
) -> Paged[WorkforceVersion]:
    query = select(WorkforceVersion).where(WorkforceVersion.workforce_id == workforce_id)
    order = (WorkforceVersion.version,)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def delete_workforce(*, session: AsyncSession, project_id: str, workforce_id: str) -> None:
    workforce = await get_workforce(
        session=session, project_id=project_id, workforce_id=workforce_id
    )
    await session.delete(workforce)


async def has_unfinished_tasks(*, session: AsyncSession, workforce_id: str) -> bool:
    """Whether a task of the workforce (or of one of its nodes) has not ended yet."""
    final = [status.value for status in TaskStatus if status.is_final]
    found = await session.scalar(
        select(Task.id).where(Task.workforce_id == workforce_id, Task.status.not_in(final)).limit(1)
    )
    return found is not None


async def users_of(
    *,
    session: AsyncSession,
    project_id: str,
    agent_id: str | None = None,
    tool_id: str | None = None,
) -> list[str]:
    """The workforces whose current definition has a node on the agent (or the tool)."""
    workforces = await list_workforces(session=session, project_id=project_id)
    return [
        f"workforce {workforce.name!r}"
        for workforce in workforces.items
        if any(
            (agent_id is not None and isinstance(n, AgentNode) and n.agent_id == agent_id)
            or (tool_id is not None and isinstance(n, ToolNode) and n.tool_id == tool_id)
            for n in workforce_spec(workforce).nodes
        )
    ]


def workforce_spec(workforce: Workforce) -> WorkforceSpec:
    return WorkforceSpec.model_validate(workforce.spec)


async def version_spec(
    *, session: AsyncSession, workforce_id: str, version: int
) -> WorkforceSpec | None:
    row = await session.scalar(
        select(WorkforceVersion).where(
            WorkforceVersion.workforce_id == workforce_id, WorkforceVersion.version == version
        )
    )
    return WorkforceSpec.model_validate(row.spec) if row else None


def _dump(spec: WorkforceSpec) -> dict[str, Any]:
    # By alias: an edge is stored as {"from": ...}, the way the API writes it.
    return spec.model_dump(mode="json", by_alias=True)
