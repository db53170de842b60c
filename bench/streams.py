"""Many SSE streams on one task: the API process's CPU and the delay from an event being
written to it reaching the clients, beside a bare sse-starlette server fanning out the same
events from memory (the floor of serving that many streams in Python).

The API runs as `baton api` does, in a process of its own on a fresh SQLite database; this
process writes a `message.delta` every 50 ms into the task's events, as an LLM activity
does, and reads all the streams. The bare server gets each event by an HTTP POST instead.
Prints the CPU each server used (% of one core) and the delays' p50 and p99, then a
`BENCH_RESULT {json}` line for bench/run_all.py.

With `--database-url postgresql+asyncpg://...` the API runs on PostgreSQL instead (its one
LISTEN connection): the bench makes a database of its own on that server and drops it after,
leaving the one named in the URL untouched.

    python bench/streams.py [--streams 300] [--seconds 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.db.tables import Agent
from baton.domain.events import EventDraft, EventType
from baton.domain.tasks import TaskStatus

EVERY_S = 0.05

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, json, sys
    import uvicorn
    from sse_starlette import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    queues = set()

    async def push(request: Request) -> Response:
        body = await request.body()
        for queue in queues:
            queue.put_nowait(body.decode())
        return Response(status_code=204)

    async def events(request: Request) -> EventSourceResponse:
        queue = asyncio.Queue()
        queues.add(queue)

        async def stream():
            try:
                while True:
                    yield {"data": await queue.get(), "event": "message.delta"}
            finally:
                queues.discard(queue)

        return EventSourceResponse(stream())

    app = Starlette(routes=[Route("/push", push, methods=["POST"]), Route("/events", events)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "the server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.1)


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    delays: list[float],
    ready: Callable[[], None],
) -> None:
    async with client.stream("GET", url, headers=headers, timeout=None) as response:
        ready()
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                at = (event.get("data") or {}).get("at") or event.get("at")
                if at:
                    delays.append(time.time() - at)


async def measure(
    label: str,
    pid: int,
    streams: int,
    seconds: float,
    url: str,
    headers: dict[str, str],
    produce: Callable[[int], Awaitable[None]],
) -> tuple[float, float, float]:
    """Opens the streams, produces for `seconds`, and returns (CPU % of one core, p50 ms,
    p99 ms) of that window."""
    delays: list[float] = []
    opened = 0

    def ready() -> None:
        nonlocal opened
        opened += 1

    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    async with httpx.AsyncClient(limits=limits) as client:
        readers = [
            asyncio.create_task(read_stream(client, url, headers, delays, ready))
            for _ in range(streams)
        ]
        while opened < streams:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the streams' replay is over
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            n += 1
            await produce(n)
            await asyncio.sleep(EVERY_S)
        await asyncio.sleep(0.5)  # the last events arrive
        cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started) * 100
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    p50 = statistics.median(delays) * 1000 if delays else float("nan")
    p99 = sorted(delays)[int(0.99 * (len(delays) - 1))] * 1000 if delays else float("nan")
    expected = n * streams
    print(
        f"  {label:<24} CPU {cpu:5.1f}% of a core   delay p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        f"   ({len(delays)} of {expected} events received)"
    )
    return cpu, p50, p99


async def own_postgres_database(server_url: str) -> str:
    """A new, empty database on the server of `server_url`; its URL."""
    name = f"baton_bench_streams_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def main(streams: int, seconds: float, server_url: str | None) -> None:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-streams-"))
    if server_url:
        database_url, kind = await own_postgres_database(server_url), "PostgreSQL"
    else:
        database_url, kind = f"sqlite+aiosqlite:///{data / 'baton.db'}", "SQLite"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    task_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Bench", project_name="Bench"
        )
        agent = Agent(project_id=created.project.id, name="Streamer", spec={})
        session.add(agent)
        await session.flush()
        await task_repo.create_task(
            session=session,
            task_id=task_id,
            project_id=created.project.id,
            agent_id=agent.id,
            first_message="hi",
        )
        await task_repo.set_status(session=session, task_id=task_id, status=TaskStatus.running)
    api_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "BATON_DATA_DIR": str(data),
        "BATON_DATABASE_URL": database_url,
        "BATON_API_PORT": str(api_port),
        "BATON_SECRET_KEY": secrets.token_urlsafe(32),
        "BATON_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # streams need no Temporal
    }
    api = subprocess.Popen([sys.executable, "-m", "baton", "api"], env=env)
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
    print(f"streams: {streams} streams on one task, an event every {EVERY_S * 1000:.0f} ms, {kind}")
    try:
        await wait_listening(api_port, api)
        await wait_listening(bare_port, bare)

        async def to_baton(n: int) -> None:
            async with sessions.begin() as session:
                await event_repo.append_events(
                    session=session,
                    task_id=task_id,
                    events=[
                        EventDraft(
                            type=EventType.message_delta,
                            data={"text": f"piece {n} ", "at": time.time()},
                        )
                    ],
                )

        bare_client = httpx.AsyncClient()

        async def to_bare(n: int) -> None:
            body = json.dumps({"text": f"piece {n} ", "at": time.time()})
            await bare_client.post(f"http://127.0.0.1:{bare_port}/push", content=body)

        url = f"http://127.0.0.1:{api_port}/api/v1/projects/{created.project.id}/tasks/{task_id}/events"
        headers = {"Authorization": f"Token {created.token}"}
        baton_cpu, baton_p50, _ = await measure(
            "Baton API", api.pid, streams, seconds, url, headers, to_baton
        )
        bare_cpu, bare_p50, _ = await measure(
            "bare sse-starlette",
            bare.pid,
            streams,
            seconds,
            f"http://127.0.0.1:{bare_port}/events",
            {},
            to_bare,
        )
        await bare_client.aclose()
    finally:
        for process in (api, bare):
            process.terminate()
            process.wait(timeout=15)
        await engine.dispose()
        if server_url:
            await drop_postgres_database(server_url, database_url)
        shutil.rmtree(data, ignore_errors=True)
    figures = [
        {
            "name": f"API CPU serving {streams} streams of one task ({kind})",
            "value": baton_cpu,
            "unit": "% of a core",
            "better": "lower",
            "baseline": {"name": "bare sse-starlette fan-out from memory", "value": bare_cpu},
        },
        {
            "name": f"event written to SSE client, p50, {streams} streams ({kind})",
            "value": baton_p50,
            "unit": "ms",
            "better": "lower",
            "baseline": {"name": "bare sse-starlette fan-out from memory", "value": bare_p50},
        },
    ]
    print("BENCH_RESULT " + json.dumps({"benchmark": "streams", "figures": figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (postgresql+asyncpg://...) to run the API on, in a database "
        "the bench makes there and drops after",
    )
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.seconds, args.database_url))
