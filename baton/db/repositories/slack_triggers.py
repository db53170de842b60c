"""Slack triggers (a Slack app's events URL for an agent or a workforce) and the events they
acted on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories.triggers import Target
from baton.db.tables import SlackEvent, SlackTrigger
from baton.security import hash_token


async def create_trigger(
    *, session: AsyncSession, target: Target, integration_id: str, token: str
) -> SlackTrigger:
    trigger = SlackTrigger(
        project_id=target.project_id,
        agent_id=target.agent_id,
        workforce_id=target.workforce_id,
        integration_id=integration_id,
        token_hash=hash_token(token),
    )
    session.add(trigger)
    await session.flush()
    return trigger


async def seen(*, session: AsyncSession, trigger: SlackTrigger, event_id: str) -> bool:
    """Whether the trigger has acted on this event already (Slack sending it again)."""
    return await session.get(SlackEvent, (trigger.id, event_id)) is not None


async def record_event(*, session: AsyncSession, trigger: SlackTrigger, event_id: str) -> None:
    """Marks the event acted on; a concurrent request that got there first is as good."""
    try:
        async with session.begin_nested():
            session.add(SlackEvent(trigger_id=trigger.id, event_id=event_id))
    except IntegrityError:
        pass


async def integration_users(*, session: AsyncSession, integration_id: str) -> list[str]:
    """What the live triggers of an integration start tasks of, as a refusal names them."""
    rows = await session.scalars(
        select(SlackTrigger).where(
            SlackTrigger.integration_id == integration_id, SlackTrigger.revoked_at.is_(None)
        )
    )
    return [
        f"the Slack events URL of agent {t.agent_id}"
        if t.agent_id
        else f"the Slack events URL of workforce {t.workforce_id}"
        for t in rows
    ]
