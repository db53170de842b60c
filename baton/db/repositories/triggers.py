"""Triggers of an agent or a workforce: webhooks (a secret URL) and schedules (a Temporal
Schedule each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import (
    AgentSchedule,
    AgentWebhook,
    EmailInbox,
    SlackTrigger,
    new_id,
    utcnow,
)
from baton.errors import NotFound
from baton.security import hash_token

Trigger = AgentWebhook | AgentSchedule | SlackTrigger | EmailInbox


@dataclass(frozen=True)
class Target:
    """What a trigger starts tasks of: an agent or a workforce of a project (one of the two)."""

    project_id: str
    agent_id: str | None = None
    workforce_id: str | None = None

    @classmethod
    def of(cls, trigger: Trigger) -> Target:
        return cls(
            project_id=trigger.project_id,
            agent_id=trigger.agent_id,
            workforce_id=trigger.workforce_id,
        )

    def owns(self, trigger: Trigger) -> bool:
        return Target.of(trigger) == self

    def where(self, table: type[Trigger]) -> list[ColumnElement[bool]]:
        return [
            table.project_id == self.project_id,
            table.agent_id.is_(None) if self.agent_id is None else table.agent_id == self.agent_id,
            table.workforce_id.is_(None)
            if self.workforce_id is None
            else table.workforce_id == self.workforce_id,
        ]


# Webhooks


async def create_webhook(
    *,
    session: AsyncSession,
    target: Target,
    token: str,
    message_template: str,
    dedupe_key_template: str | None,
    params_template: dict[str, str] | None = None,
) -> AgentWebhook:
    webhook = AgentWebhook(
        project_id=target.project_id,
        agent_id=target.agent_id,
        workforce_id=target.workforce_id,
        token_hash=hash_token(token),
        message_template=message_template,
        dedupe_key_template=dedupe_key_template,
        params_template=params_template or None,
    )
    session.add(webhook)
    await session.flush()
    return webhook


async def list_webhooks(
    *, session: AsyncSession, target: Target, page: PageRequest = ALL
) -> Paged[AgentWebhook]:
    """The target's webhooks that still work; revoked ones are gone for good."""
    query = select(AgentWebhook).where(
        *target.where(AgentWebhook), AgentWebhook.revoked_at.is_(None)
    )
    order = (AgentWebhook.created_at, AgentWebhook.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def revoke_webhook(*, session: AsyncSession, target: Target, webhook_id: str) -> None:
    webhook = await session.get(AgentWebhook, webhook_id)
    if webhook is None or not target.owns(webhook) or webhook.revoked_at is not None:
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
    target: Target,
    cron: str,
    timezone: str,
    message: str,
    params: dict[str, Any] | None = None,
) -> AgentSchedule:
    schedule = AgentSchedule(
        id=new_id(),
        project_id=target.project_id,
        agent_id=target.agent_id,
        workforce_id=target.workforce_id,
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
    *, session: AsyncSession, target: Target, page: PageRequest = ALL
) -> Paged[AgentSchedule]:
    query = select(AgentSchedule).where(*target.where(AgentSchedule))
    order = (AgentSchedule.created_at, AgentSchedule.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def get_schedule(*, session: AsyncSession, target: Target, schedule_id: str) -> AgentSchedule:
    schedule = await session.get(AgentSchedule, schedule_id)
    if schedule is None or not target.owns(schedule):
        raise NotFound(f"schedule {schedule_id} not found")
    return schedule
