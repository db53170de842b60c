"""The audit log: entries are added in the session of the act they record, so both commit
or neither does, and read newest first. There is deliberately no update or delete here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import AuditEntry
from baton.domain.audit import Actor, AuditAction, Detail, Target

# A detail holds plain facts; text past this length is cut.
MAX_DETAIL_TEXT = 200


async def record(
    *,
    session: AsyncSession,
    org_id: int,
    project_id: str | None,
    actor: Actor,
    action: AuditAction,
    target: Target,
    detail: Detail | None = None,
) -> AuditEntry:
    """Adds the entry to the act's transaction; a failed act rolls it back with it."""
    entry = AuditEntry(
        org_id=org_id,
        project_id=project_id,
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        action=action.value,
        target_type=target.type,
        target_id=target.id,
        client=actor.client,
        detail=_plain(detail or {}),
    )
    session.add(entry)
    await session.flush()
    return entry


def _plain(detail: Detail) -> dict[str, Any]:
    """Scalars only, text cut short: a caller cannot drop a request body (and the secret in
    it) into the log by accident, and a long name never makes an act fail."""
    plain: dict[str, Any] = {}
    for name, value in detail.items():
        if not isinstance(value, str | int | float | bool | None):
            raise TypeError(f"audit detail {name!r} is a {type(value).__name__}, not a scalar")
        if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
            value = f"{value[: MAX_DETAIL_TEXT - 1]}\u2026"
        plain[name] = value
    return plain


@dataclass(frozen=True)
class AuditFilter:
    action: AuditAction | None = None
    project_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_entries(
    *, session: AsyncSession, org_id: int, where: AuditFilter, page: PageRequest = ALL
) -> Paged[AuditEntry]:
    """The organisation's entries, newest first; `since` inclusive, `until` exclusive."""
    query = select(AuditEntry).where(AuditEntry.org_id == org_id)
    if where.action is not None:
        query = query.where(AuditEntry.action == where.action.value)
    if where.project_id is not None:
        query = query.where(AuditEntry.project_id == where.project_id)
    if where.since is not None:
        query = query.where(AuditEntry.created_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEntry.created_at < where.until)
    order = (Key(AuditEntry.created_at, descending=True), Key(AuditEntry.id, descending=True))
    return await fetch_page(session=session, query=query, order=order, page=page)
