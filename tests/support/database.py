"""Rows written straight to the database, for tests that call activities or repositories
without going through the API."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import tasks as task_repo
from baton.db.tables import Agent
from tests.support.tenants import Tenant


async def stored_task(
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    *,
    agent_name: str,
    first_message: str = "hi",
    **columns: Any,
) -> str:
    """The id of a new task of a new agent (of an empty spec) in the tenant's project, as
    the repository writes one, with any other of its `columns` (`user_group_id`...); no
    workflow runs it."""
    task_id = str(uuid.uuid4())
    async with session_factory.begin() as session:
        agent = Agent(project_id=tenant.project_id, name=agent_name, spec={})
        session.add(agent)
        await session.flush()
        await task_repo.create_task(
            session=session,
            task_id=task_id,
            project_id=tenant.project_id,
            agent_id=agent.id,
            first_message=first_message,
            **columns,
        )
    return task_id
