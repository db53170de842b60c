"""Agent tasks under concurrency: N tasks on the offline `scripted:tools` model, each calling
two tools, through the real API (uvicorn, in this process), a worker process (`baton worker`,
as `baton up` runs it) and the embedded Temporal dev server.

Every client follows its task's SSE stream to the task's end. Prints tasks/s, the trigger
call's p50/p99 latency, and the p50 delay from a token delta being produced (its `at` stamp,
taken in the LLM activity) to it reaching an SSE client (and its two halves), then
a `BENCH_RESULT {json}` line for bench/run_all.py. The baseline, in the same run and on the
same Temporal server: as many plain workflows doing the least such a task needs (one
activity per model call, one per tool call; bench/plain_agent.py), with the same concurrency.

    python bench/agent_tasks.py [--tasks 100] [--concurrency 20] [--streams 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dev_server import start_dev_server
from plain_agent import PlainAgent, model, tool

from api.app import create_app
from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.settings import Settings

MESSAGE = 'call echo {"text": "one"}\ncall echo {"text": "two"}'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Delays:
    """Of each token delta: produced (its `at` stamp) to received by the SSE client, and the
    two halves, produced to written (the event's `created_at`, in the worker's transaction)
    and written to received (the API's read and the stream)."""

    received: list[float] = field(default_factory=list)
    written: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)


async def watch(client: httpx.AsyncClient, url: str, delays: Delays | None) -> None:
    """Reads a task's SSE stream to its end (the task's end), noting each delta's delays."""
    async with client.stream("GET", url, timeout=120) as response:
        async for line in response.aiter_lines():
            if delays is None or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            produced = event["data"].get("at")
            if event["type"] == "message.delta" and produced:
                now = time.time()
                written = datetime.fromisoformat(event["created_at"])
                written_at = written.replace(tzinfo=written.tzinfo or UTC).timestamp()
                delays.received.append(now - produced)
                delays.written.append(written_at - produced)
                delays.sent.append(now - written_at)


async def plain_tasks(client: Client, tasks: int, concurrency: int) -> float:
    """The baseline's tasks/s: `tasks` PlainAgent workflows, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await client.execute_workflow(
                PlainAgent.run, f"task {i}", id=f"plain-agent-{uuid.uuid4()}", task_queue="plain"
            )

    async with Worker(client, task_queue="plain", workflows=[PlainAgent], activities=[model, tool]):
        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(tasks)))
        return tasks / (time.perf_counter() - began)


async def main(tasks: int, concurrency: int, streams: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    database_url = f"sqlite+aiosqlite:///{data / 'baton.db'}"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    env = await start_dev_server(data)
    port = free_port()
    settings = Settings(
        data_dir=data, database_url=database_url, temporal_task_queue="bench", api_port=port
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
    base = f"http://127.0.0.1:{port}/api/v1/projects/{created.project.id}"
    headers = {"Authorization": f"Token {created.token}"}

    latencies: list[float] = []
    delays = Delays()
    worker = subprocess.Popen(
        [sys.executable, "-m", "baton", "worker"],
        env={
            **os.environ,
            "BATON_DATABASE_URL": database_url,
            "BATON_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "BATON_TEMPORAL_TASK_QUEUE": "bench",
            "BATON_DATA_DIR": str(data),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        tool = await client.post(
            f"{base}/tools",
            json={
                "name": "echo",
                "params": [{"name": "text"}],
                "steps": [{"name": "t", "type": "template", "template": "got {{ params.text }}"}],
            },
        )
        agent = await client.post(
            f"{base}/agents",
            json={
                "name": "Bench",
                "model": "scripted:tools",
                "tools": [{"tool_id": tool.json()["id"]}],
            },
        )
        agent_id = agent.json()["id"]
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                response = await client.post(
                    f"{base}/agents/{agent_id}/tasks", json={"message": MESSAGE}
                )
                latencies.append(time.perf_counter() - started)
                task_id = response.json()["id"]
                # Every client waits for its task's end on the task's stream (polling the task
                # instead, 5 times a second, loaded the API with ~100 requests/s); the deltas of
                # the first `streams` are timed.
                watched = delays if i < streams else None
                await watch(client, f"{base}/tasks/{task_id}/events", watched)
                task = (await client.get(f"{base}/tasks/{task_id}")).json()
                assert task["status"] == "completed", task

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(tasks)))
        elapsed = time.perf_counter() - began

    plain_rate = await plain_tasks(env.client, tasks, concurrency)
    worker.terminate()
    worker.wait(timeout=30)
    server.should_exit = True
    await serving
    await env.shutdown()
    await engine.dispose()
    shutil.rmtree(data, ignore_errors=True)
    print(f"agent_tasks: {tasks} tasks (2 tool calls each), concurrency {concurrency}")
    print(f"  tasks/s:                   {tasks / elapsed:.1f}  ({elapsed:.1f}s in all)")
    print(f"  plain workflow baseline:   {plain_rate:.1f} tasks/s")
    print(f"  ratio (Baton / plain):     {tasks / elapsed / plain_rate:.2f}  (target >= 0.8)")
    print(
        f"  trigger latency p50 / p99: {percentile(latencies, 0.5) * 1000:.0f} ms / "
        f"{percentile(latencies, 0.99) * 1000:.0f} ms"
    )
    figures: list[dict[str, object]] = [
        {
            "name": "agent tasks (2 tool calls each)",
            "value": tasks / elapsed,
            "unit": "tasks/s",
            "better": "higher",
            "baseline": {
                "name": "plain workflow: an activity per model and tool call",
                "value": plain_rate,
            },
        },
        {"name": "trigger latency p50", "value": percentile(latencies, 0.5) * 1000, "unit": "ms"},
        {"name": "trigger latency p99", "value": percentile(latencies, 0.99) * 1000, "unit": "ms"},
    ]
    if delays.received:
        p50 = {name: statistics.median(values) * 1000 for name, values in vars(delays).items()}
        print(
            f"  delta -> SSE client p50:   {p50['received']:.0f} ms "
            f"({len(delays.received)} deltas on {streams} streams; produced -> written "
            f"{p50['written']:.0f} ms, written -> client {p50['sent']:.0f} ms)"
        )
        figures.append(
            {"name": "token delta -> SSE client p50", "value": p50["received"], "unit": "ms"}
        )
    print("BENCH_RESULT " + json.dumps({"benchmark": "agent_tasks", "figures": figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--streams", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.concurrency, args.streams))
