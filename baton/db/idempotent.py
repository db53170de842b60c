"""Writes that an activity retry may repeat without effect."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from baton.db.tables import Base


async def insert_once(
    session: AsyncSession,
    table: type[Base],
    rows: dict[str, Any] | list[dict[str, Any]],
    *,
    key: list[str],
) -> int:
    """Inserts each row unless one with the same `key` columns exists (that row is left as
    it is). Several rows go in one statement. Returns how many rows were new."""
    if not rows:
        return 0
    # One row as `values(row)`: SQLAlchemy caches that statement's compiled form, which it
    # cannot for a list of rows (compiling an insert costs more than running it).
    values = rows[0] if isinstance(rows, list) and len(rows) == 1 else rows
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(
        insert(table).values(values).on_conflict_do_nothing(index_elements=key)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def insert_new(
    session: AsyncSession, table: type[Base], rows: list[dict[str, Any]], *, key: str
) -> set[Any]:
    """Inserts each row unless one with the same `key` (a unique column) exists, and returns
    the keys of the rows it inserted. The rows go as the parameters of one statement: the
    database gets one INSERT for them all, and its compiled form is cached."""
    if not rows:
        return set()
    statement = _insert_new(session.get_bind().dialect.name, table, key)
    return set((await session.execute(statement, rows)).scalars())


@functools.cache
def _insert_new(dialect: str, table: type[Base], key: str) -> ReturningInsert[tuple[Any]]:
    """Built once per table: building it cost about as much as running it."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=[key]).returning(getattr(table, key))
