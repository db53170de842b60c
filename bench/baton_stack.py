"""Baton as `baton up` runs it, for the benchmarks that go through the API: a fresh SQLite
database, the embedded Temporal dev server, the API (uvicorn, in this process) and a worker
process (`baton worker`), with one organisation whose project the benchmark uses."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from dev_server import start_dev_server
from metering import metering_env
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.settings import Settings

TASK_QUEUE = "bench"
# The task benchmarks' work: an `echo` tool, and a message on which `scripted:tools` calls it
# twice.
ECHO_TOOL = {
    "name": "echo",
    "params": [{"name": "text"}],
    "steps": [{"name": "t", "type": "template", "template": "got {{ params.text }}"}],
}
MESSAGE = 'call echo {"text": "one"}\ncall echo {"text": "two"}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class BatonStack:
    env: WorkflowEnvironment
    base: str
    """The project's API root: `http://127.0.0.1:<port>/api/v1/projects/<id>`."""
    headers: dict[str, str]


@asynccontextmanager
async def baton_stack(metering: bool | None = None) -> AsyncIterator[BatonStack]:
    """`metering` on or off: the organisation on a plan with allowances and the offline
    models priced, metered or not (bench/metering.py); None: the defaults."""
    data = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    metered = {} if metering is None else metering_env(data, on=metering)
    database_url = f"sqlite+aiosqlite:///{data / 'baton.db'}"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    env = await start_dev_server(data)
    port = free_port()
    settings = Settings(
        data_dir=data,
        database_url=database_url,
        temporal_task_queue=TASK_QUEUE,
        api_port=port,
        **{name.removeprefix("BATON_").lower(): value for name, value in metered.items()},
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, temporal_client=env.client),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with sessions.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Bench", project_name="Bench"
        )
    worker = subprocess.Popen(
        [sys.executable, "-m", "baton", "worker"],
        env={
            **os.environ,
            "BATON_DATABASE_URL": database_url,
            "BATON_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "BATON_TEMPORAL_TASK_QUEUE": TASK_QUEUE,
            "BATON_DATA_DIR": str(data),
            **metered,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack = BatonStack(
        env=env,
        base=f"http://127.0.0.1:{port}/api/v1/projects/{created.project.id}",
        headers={"Authorization": f"Token {created.token}"},
    )
    try:
        yield stack
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.should_exit = True
        await serving
        await env.shutdown()
        await engine.dispose()
        shutil.rmtree(data, ignore_errors=True)
