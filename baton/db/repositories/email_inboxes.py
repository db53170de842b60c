"""Email inboxes of an agent or a workforce, and the messages they took: which task each
Message-ID started or joined."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories.triggers import Target
from baton.db.tables import EmailInbox, InboundEmail
from baton.security import hash_token


async def create_inbox(*, session: AsyncSession, target: Target, token: str) -> EmailInbox:
    inbox = EmailInbox(
        project_id=target.project_id,
        agent_id=target.agent_id,
        workforce_id=target.workforce_id,
        token_hash=hash_token(token),
    )
    session.add(inbox)
    await session.flush()
    return inbox


async def task_of_message(*, session: AsyncSession, inbox_id: str, message_id: str) -> str | None:
    """The task a message the inbox took started or joined."""
    query = select(InboundEmail.task_id).where(
        InboundEmail.inbox_id == inbox_id, InboundEmail.message_key == message_key(message_id)
    )
    task_id: str | None = (await session.scalars(query)).first()
    return task_id


async def task_answered(
    *, session: AsyncSession, inbox_id: str, message_ids: list[str]
) -> str | None:
    """The task of the first of `message_ids` (most recent first) the inbox took."""
    for message_id in message_ids:
        task_id = await task_of_message(session=session, inbox_id=inbox_id, message_id=message_id)
        if task_id is not None:
            return task_id
    return None


async def claim_message(
    *, session: AsyncSession, inbox_id: str, message_id: str, task_id: str
) -> bool:
    """Records that the message goes to `task_id`; False when the inbox has it already (a
    repeated delivery, here or on another replica, whose row the unique key refuses)."""
    try:
        async with session.begin_nested():
            session.add(
                InboundEmail(
                    inbox_id=inbox_id,
                    message_key=message_key(message_id),
                    message_id=message_id,
                    task_id=task_id,
                )
            )
    except IntegrityError:
        return False
    return True


def message_key(message_id: str) -> str:
    return hashlib.sha256(message_id.strip().encode()).hexdigest()
