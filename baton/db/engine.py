"""The async engine and session factory."""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlite_vec  # type: ignore[import-untyped]
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# The API and the worker are separate processes writing one SQLite file: WAL lets readers
# and one writer proceed together, and the busy timeout makes a second writer wait, not fail.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)
SQLITE_BUSY_TIMEOUT_S = 15.0
# Some Python builds (pyenv's default among them) leave SQLite's extension loading out; vector
# search then runs sqlite-vec on a side connection of its own (baton.knowledge.vectors).
SQLITE_LOADS_EXTENSIONS = hasattr(sqlite3.Connection, "enable_load_extension")


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> AsyncEngine:
    """`busy_timeout_s`: how long a SQLite writer waits for another's lock before the
    statement fails (which the API answers with a 503 and `Retry-After`)."""
    if is_sqlite(url):
        engine = create_async_engine(
            url,
            connect_args={"timeout": busy_timeout_s},
            pool_size=4,
            max_overflow=0,
            pool_timeout=60,
        )
        busy = f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}"

        def apply_pragmas(dbapi_connection: Any, record: Any) -> None:
            _apply_sqlite_pragmas(dbapi_connection, record, busy)

        event.listen(engine.sync_engine, "connect", apply_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _apply_sqlite_pragmas(dbapi_connection: Any, _record: Any, busy: str) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (*_SQLITE_PRAGMAS, busy):
        cursor.execute(pragma)
    cursor.close()
    if SQLITE_LOADS_EXTENSIONS:
        dbapi_connection.run_async(_load_sqlite_vec)


async def _load_sqlite_vec(connection: Any) -> None:
    """sqlite-vec gives SQLite the vector distance functions knowledge search uses. Loading
    extensions is switched on only for this one load, so SQL can never load another."""
    await connection.enable_load_extension(True)
    try:
        await connection.load_extension(sqlite_vec.loadable_path())
    finally:
        await connection.enable_load_extension(False)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
