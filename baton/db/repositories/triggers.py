"""Triggers of an agent or a workforce: those found by a secret URL (webhooks, Slack events
URLs, email inboxes: listed, revoked and found by their token alike) and schedules (a Temporal
Schedule each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

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
UrlTrigger = TypeVar("UrlTrigger", AgentWebhook, SlackTrigger, EmailInbox)
# What a person calls each kind of URL trigger, and what happens to it when it goes.
_NAMES: dict[type[Any], tuple[str, str]] = {
    AgentWebhook: ("webhook", "revoked"),
    SlackTrigger: ("Slack trigger", "revoked"),
    EmailInbox: ("email inbox", "deleted"),
}


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


# Triggers found by a secret URL


async def list_live(
    *, session: AsyncSession, table: type[UrlTrigger], target: Target, page: PageRequest = ALL
) -> Paged[UrlTrigger]:
    """The target's triggers of this kind that still work; revoked ones are gone for good."""
    query = select(table).where(*target.where(table), table.revoked_at.is_(None))
    return await fetch_page(
        session=session, query=query, order=(table.created_at, table.id), page=page
    )


async def revoke(
    *, session: AsyncSession, table: type[UrlTrigger], target: Target, trigger_id: str
) -> None:
    trigger = await session.get(table, trigger_id)
    if trigger is None or not target.owns(trigger) or trigger.revoked_at is not None:
        raise NotFound(f"{_NAMES[table][0]} {trigger_id} not found")
    trigger.revoked_at = utcnow()


async def find_by_token(
    *, session: AsyncSession, table: type[UrlTrigger], token: str
) -> UrlTrigger:
    """The live trigger a presented URL token belongs to; unknown and revoked look alike."""
    trigger = (
        await session.scalars(
            select(table).where(table.token_hash == hash_token(token), table.revoked_at.is_(None))
        )
    ).one_or_none()
    if trigger is None:
        name, gone = _NAMES[table]
        raise NotFound(f"no {name} at this URL: it was {gone} or never existed")
    return trigger


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
