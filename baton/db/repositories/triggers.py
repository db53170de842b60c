"""Triggers of an agent: webhooks (a secret URL) and schedules (a Temporal Schedule each)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import AgentSchedule, AgentWebhook, new_id, utcnow
from baton.errors import NotFound
from baton.security import hash_token

# Webhooks


async def create_webhook(
    *,
    session: AsyncSession,
    project_id: str,
    agent_id: str,
    token: str,
    message_template: str,
    dedupe_key_template: str | None,
    params_template: dict[str, str] | None = None,
) -> AgentWebhook:
    webhook = AgentWebhook(
        project_id=project_id,
        agent_id=agent_id,
        token_hash=hash_token(token),
        message_template=message_template,
        dedupe_key_template=dedupe_key_template,
        params_template=params_template or None,
    )
    session.add(webhook)
    await session.flush()
    return webhook


async def list_webhooks(
    *, session: AsyncSession, project_id: str, agent_id: str, page: PageRequest = ALL
) -> Paged[AgentWebhook]:
    """The agent's webhooks that still work; revoked ones are gone for good."""
    query = select(AgentWebhook).where(
        AgentWebhook.project_id == project_id,
        AgentWebhook.agent_id == agent_id,
        AgentWebhook.revoked_at.is_(None),
    )
    order = (AgentWebhook.created_at, AgentWebhook.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def revoke_webhook(
    *, session: AsyncSession, project_id: str, agent_id: str, webhook_id: str
) -> None:
    webhook = await session.get(AgentWebhook, webhook_id)
    if (
        webhook is None
        or webhook.project_id != project_id
        or webhook.agent_id != agent_id
        or webhook.revoked_at is not None
    ):
        raise NotFound(f"webhook {webhook_id} not found")
    webhook.revoked_at = utcnow()


async def find_webhook(*, session: AsyncSession, token: str) -> AgentWebhook:
    """The live webhook a presented URL token belongs to; unknown and revoked look alike."""
    webhook = (
        await session.scalars(
            select(AgentWebhook).where(
                AgentWebhook.token_hash == hash_token(token), AgentWebhook.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    if webhook is None:
        raise NotFound("no webhook at this URL: it was revoked or never existed")
    return webhook


# Schedules


async def create_schedule(
    *,
    session: AsyncSession,
    project_id: str,
    agent_id: str,
    cron: str,
    timezone: str,
    message: str,
    params: dict[str, Any] | None = None,
) -> AgentSchedule:
    schedule = AgentSchedule(
        id=new_id(),
        project_id=project_id,
        agent_id=agent_id,
        cron=cron,
        timezone=timezone,
        message=message,
        params=params,
        paused=False,
    )
    session.add(schedule)
    await session.flush()
    return schedule


async def list_schedules(
    *, session: AsyncSession, project_id: str, agent_id: str, page: PageRequest = ALL
) -> Paged[AgentSchedule]:
    query = select(AgentSchedule).where(
        AgentSchedule.project_id == project_id, AgentSchedule.agent_id == agent_id
    )
    order = (AgentSchedule.created_at, AgentSchedule.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def get_schedule(
    *, session: AsyncSession, project_id: str, agent_id: str, schedule_id: str
) -> AgentSchedule:
    schedule = await session.get(AgentSchedule, schedule_id)
    if schedule is None or schedule.project_id != project_id or schedule.agent_id != agent_id:
        raise NotFound(f"schedule {schedule_id} not found")
    return schedule
