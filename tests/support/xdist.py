"""What each pytest-xdist worker (`pytest -n N`) gets of its own, and the one lock they share.

Every worker is a process with its own session fixtures: its own Temporal dev server, its own
temp dirs (pytest puts them under the run's `popen-gwN`) and, here, its own database. Ports
are always asked of the kernel (port 0), never fixed. A plain run has no worker id and
behaves as it always did."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine


def worker_id() -> str | None:
    """`gw0`, `gw1`, ... under `pytest -n N`; None in a plain run."""
    return os.environ.get("PYTEST_XDIST_WORKER")


async def worker_database(url: str, worker: str) -> str:
    """The URL of the worker's own PostgreSQL database beside `url`'s (`baton_test` gives
    `baton_test_gw0`), created through `url` if it is missing. Its schema is reset and
    migrated by the session, as the shared database's is in a plain run."""
    given = make_url(url)
    name = f"{given.database}_{worker}"
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


@contextmanager
def machine_share(lock_dir: Path, *, alone: bool) -> Iterator[None]:
    """Held around every test of a parallel run: most tests share the machine (a shared lock);
    a test marked `alone` (it restarts a server the others use) waits for the tests running
    on the other workers to end and holds the machine while it runs (an exclusive lock).

    A waiting `alone` test holds the turnstile, so tests that start later queue behind it
    instead of keeping the shared lock taken forever."""
    with (
        (lock_dir / "turnstile.lock").open("a") as turnstile,
        (lock_dir / "machine.lock").open("a") as machine,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)
