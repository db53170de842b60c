"""Starting the task a trigger asks for (a webhook, a Slack event, an email): a task of its
workforce, or of its agent, through the same start as the API's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from baton.db.repositories import agents as agent_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import Task
from baton.services.tasks import start_agent_task
from baton.services.workforce_tasks import start_workforce_task
from baton.settings import Settings


async def start_target_task(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    target: Target,
    message: str,
    task_id: str | None,
    params: dict[str, Any] | None = None,
) -> Task:
    """A task of the target's workforce, or of its agent; `task_id` makes a repeated start
    find the task it started before."""
    if target.workforce_id is not None:
        workforce = await workforce_repo.get_workforce(
            session=session, project_id=target.project_id, workforce_id=target.workforce_id
        )
        return await start_workforce_task(
            session=session,
            temporal_client=temporal_client,
            settings=settings,
            workforce=workforce,
            spec=workforce_repo.workforce_spec(workforce),
            message=message,
            params=params,
            task_id=task_id,
        )
    assert target.agent_id is not None
    agent = await agent_repo.get_agent(
        session=session, project_id=target.project_id, agent_id=target.agent_id
    )
    return await start_agent_task(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        agent=agent,
        message=message,
        task_id=task_id,
        params=params,
    )
