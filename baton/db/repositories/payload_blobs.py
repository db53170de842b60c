"""Large Temporal payloads kept out of history (claim checks), and their retention.

A blob belongs to the workflow it was stored for. Once that workflow has been closed longer
than Temporal keeps its history, nothing can ask for the blob again (no replay, reset or UI
view), so it is deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import PayloadBlob, utcnow


@dataclass(frozen=True)
class NewBlob:
    key: str
    data: bytes
    workflow_id: str | None


async def put_blobs(*, session: AsyncSession, blobs: Sequence[NewBlob]) -> None:
    """Stores each blob once. A blob stored again is in use again (a retry, or a new run under
    a reused workflow id, as a set's embedding has): its closing is forgotten."""
    if not blobs:
        return
    now = utcnow()
    unique = {b.key: b for b in blobs}.values()  # one statement may not touch a row twice
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(PayloadBlob).values(
        [
            {"key": b.key, "data": b.data, "workflow_id": b.workflow_id, "created_at": now}
            for b in unique
        ]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["key"],
            set_={"closed_at": None, "created_at": statement.excluded.created_at},
        )
    )


async def get_blobs(*, session: AsyncSession, keys: Sequence[str]) -> dict[str, bytes]:
    """The stored bytes by key; a key not stored is absent."""
    rows = await session.execute(
        select(PayloadBlob.key, PayloadBlob.data).where(PayloadBlob.key.in_(set(keys)))
    )
    return {key: data for key, data in rows.all()}


async def owners_with_open_blobs(*, session: AsyncSession, workflow_ids: Sequence[str]) -> set[str]:
    """Which of `workflow_ids` own blobs not yet marked closed."""
    rows = await session.scalars(
        select(PayloadBlob.workflow_id)
        .where(PayloadBlob.workflow_id.in_(set(workflow_ids)), PayloadBlob.closed_at.is_(None))
        .distinct()
    )
    return {workflow_id for workflow_id in rows.all() if workflow_id is not None}


async def mark_closed(*, session: AsyncSession, workflow_id: str, closed_at: datetime) -> int:
    """Records that the workflow closed at `closed_at` on the blobs it stored until then (a
    later run under the same id stores its own); how many it marked."""
    result = await session.execute(
        update(PayloadBlob)
        .where(
            PayloadBlob.workflow_id == workflow_id,
            PayloadBlob.closed_at.is_(None),
            PayloadBlob.created_at <= closed_at,
        )
        .values(closed_at=closed_at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_closed_before(*, session: AsyncSession, before: datetime, limit: int) -> int:
    """Deletes up to `limit` blobs whose workflow closed before `before`; how many it deleted."""
    keys = (
        await session.scalars(
            select(PayloadBlob.key).where(PayloadBlob.closed_at < before).limit(limit)
        )
    ).all()
    if not keys:
        return 0
    # The date again: a blob stored anew since it was selected is in use once more.
    result = await session.execute(
        delete(PayloadBlob).where(PayloadBlob.key.in_(keys), PayloadBlob.closed_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
