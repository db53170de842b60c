"""Alembic migrations build exactly the tables the code uses, on SQLite and PostgreSQL, and
go down and up again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from baton.db import migrate
from baton.db.engine import create_engine, is_sqlite
from baton.db.tables import Base, CreditTotal
from tests.support.xdist import worker_id

# Each xdist worker scratches a database of its own.
SCRATCH_DATABASE = "baton_migration_test" + (f"_{worker_id()}" if worker_id() else "")


@pytest.fixture
async def scratch_database(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own: a new SQLite file, or a new PostgreSQL database."""
    if is_sqlite(database_url):
        yield f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}"
        return
    await _recreate_postgres_database(database_url, create=True)
    yield (
        make_url(database_url).set(database=SCRATCH_DATABASE).render_as_string(hide_password=False)
    )
    await _recreate_postgres_database(database_url, create=False)


async def _recreate_postgres_database(url: str, *, create: bool) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)"))
        if create:
            await connection.execute(text(f"CREATE DATABASE {SCRATCH_DATABASE}"))
    await engine.dispose()


# The lexical index is per database and made by the migration alone: SQLite's FTS5 table (and
# its shadow tables), PostgreSQL's expression index. The models do not declare it.
SEARCH_INDEX_PREFIXES = ("knowledge_rows_fts", "ix_knowledge_rows_fts")


def _is_search_index(name: str | None) -> bool:
    return bool(name) and str(name).startswith(SEARCH_INDEX_PREFIXES)


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": lambda name, _type, _parent: not _is_search_index(name),
        },
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    names = set(inspect(connection).get_table_names()) - {"alembic_version"}
    return {name for name in names if not _is_search_index(name)}


def _search_index_present(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        return "knowledge_rows_fts" in inspect(connection).get_table_names()
    indexes = inspect(connection).get_indexes("knowledge_rows")
    return any(index["name"] == "ix_knowledge_rows_fts" for index in indexes)


async def test_migrations_create_exactly_the_models_tables(scratch_database: str):
    await migrate.aupgrade(scratch_database)
    engine = create_engine(scratch_database)
    async with engine.connect() as connection:
        assert await connection.run_sync(_tables) == set(Base.metadata.tables)
        assert await connection.run_sync(_differences) == []
        assert await connection.run_sync(_search_index_present)
    await engine.dispose()


async def test_migrations_go_down_to_nothing_and_up_again(scratch_database: str):
    await migrate.aupgrade(scratch_database)
    await asyncio.to_thread(migrate.downgrade, scratch_database, "base")
    engine = create_engine(scratch_database)
    async with engine.connect() as connection:
        assert await connection.run_sync(_tables) == set()
        assert set(await connection.run_sync(lambda c: inspect(c).get_table_names())) <= {
            "alembic_version"
        }
    await migrate.aupgrade(scratch_database)
    async with engine.connect() as connection:
        assert await connection.run_sync(_tables) == set(Base.metadata.tables)
    await engine.dispose()


async def test_upgrading_twice_changes_nothing(scratch_database: str):
    await migrate.aupgrade(scratch_database)
    await migrate.aupgrade(scratch_database)
    engine = create_engine(scratch_database)
    async with engine.connect() as connection:
        version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
    await engine.dispose()
    head = ScriptDirectory.from_config(migrate.alembic_config(scratch_database)).get_current_head()
    assert version == [(head,)]


async def test_the_credit_totals_are_built_from_the_ledger_already_there(scratch_database: str):
    await migrate.aupgrade(scratch_database, "0023")
    engine = create_engine(scratch_database)
    month = datetime(2026, 11, 5, tzinfo=UTC)
    entries = [
        ("grant", None, 5_000_000, 0, month),
        ("debit", "p1", 2_000_000, 500_000, month),
        ("debit", "p2", 1_000_000, 0, month + timedelta(days=30)),  # December
        ("debit", None, 3_000_000, 0, month + timedelta(days=30)),
    ]
    async with engine.begin() as connection:
        org = Base.metadata.tables["organizations"]
        await connection.execute(org.insert().values(id=1, name="o", created_at=month))
        await connection.execute(
            Base.metadata.tables["credit_entries"].insert(),
            [
                {
                    "org_id": 1,
                    "project_id": project,
                    "kind": kind,
                    "currency": "actions",
                    "amount": amount,
                    "from_grant": from_grant,
                    "idempotency_key": f"k{n}",
                    "created_at": at,
                }
                for n, (kind, project, amount, from_grant, at) in enumerate(entries)
            ],
        )
    await migrate.aupgrade(scratch_database)
    async with engine.connect() as connection:
        rows = (await connection.execute(select(CreditTotal.__table__))).all()
    await engine.dispose()
    totals = {(r.period_start.date().isoformat(), r.project_id): r[4:] for r in rows}
    assert totals == {
        ("1970-01-01", ""): (6_000_000, 500_000, 5_000_000),
        ("2026-11-01", ""): (2_000_000, 500_000, 5_000_000),
        ("2026-11-01", "p1"): (2_000_000, 500_000, 0),
        ("2026-12-01", ""): (4_000_000, 0, 0),
        ("2026-12-01", "p2"): (1_000_000, 0, 0),
    }
