"""Counting API requests per token and minute in the database (baton/domain/rate_limits.py)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import RateWindow


async def count_request(*, session: AsyncSession, token_key: str, minute: int) -> int:
    """Counts one request of `token_key` in `minute` and returns the minute's count so far:
    one atomic statement (an upsert that increments), so concurrent requests on any replica
    never lose a count, on SQLite and PostgreSQL alike."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(RateWindow)
        .values(token_key=token_key, minute=minute, requests=1)
        .on_conflict_do_update(
            index_elements=["token_key", "minute"],
            set_={"requests": RateWindow.requests + 1},
        )
        .returning(RateWindow.requests)
    )
    return int((await session.execute(statement)).scalar_one())


async def forget_before(*, session: AsyncSession, minute: int) -> None:
    """Deletes every token's windows before `minute`: they no longer limit anything."""
    await session.execute(delete(RateWindow).where(RateWindow.minute < minute))
