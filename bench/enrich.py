"""Enrichment throughput: N rows through a one-step tool (an HTTP POST to a local server in a
process of its own) against a plain Temporal workflow that runs one no-op activity per row,
on the same embedded dev server (WAL pragmas, as `baton up` runs it) in the same run, with
the same number of rows in flight. Prints rows/s of both and their ratio (enrichment / plain;
above 1.0 means enrichment is faster).

    python bench/enrich.py [--rows 10000] [--concurrency 8] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dev_server import start_dev_server

from api.app import create_app
from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import tools as tool_repo
from baton.domain.knowledge import KnowledgeSetSpec
from baton.domain.tools import ToolSpec
from baton.knowledge import store
from baton.settings import Settings
from worker import create_worker

# A plain workflow continues as new after this many activities, as any long one must.
PLAIN_ACTIVITIES_PER_RUN = 2000


@activity.defn(name="bench.noop_row")
async def noop_row(row: int) -> int:
    return row


class PlainRows(BaseModel):
    rows: int
    concurrency: int
    start: int = 0


@workflow.defn(name="PlainRows")
class PlainRowsWorkflow:
    """One no-op activity per row, `concurrency` at a time."""

    @workflow.run
    async def run(self, job: PlainRows) -> int:
        end = min(job.rows, job.start + PLAIN_ACTIVITIES_PER_RUN)
        gate = asyncio.Semaphore(job.concurrency)

        async def one(row: int) -> None:
            async with gate:
                await workflow.execute_activity(
                    noop_row, row, start_to_close_timeout=timedelta(seconds=30)
                )

        await asyncio.gather(*(one(row) for row in range(job.start, end)))
        if end < job.rows:
            workflow.continue_as_new(job.model_copy(update={"start": end}))
        return job.rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(port: int) -> None:
    """The tool's HTTP endpoint, in a process of its own so it takes no time from the worker:
    a bare HTTP/1.1 keep-alive server answering `{"length": <len of text>}`, so the figures
    measure Baton and not the server (an ASGI server on pure-Python h11 answers a few hundred
    requests a second here, less than the baseline's activities)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                answer = json.dumps({"length": len(body.get("text", ""))}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + b"content-length: %d\r\n\r\n" % len(answer)
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(run())


async def wait_for_port(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


async def main(rows: int, concurrency: int, batch_size: int, database: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    database_url = database or f"sqlite+aiosqlite:///{data / 'baton.db'}"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    env = await start_dev_server(data)
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    settings = Settings(
        data_dir=data,
        database_url=database_url,
        temporal_task_queue="bench-enrich",
        http_allow_networks=["127.0.0.0/8"],
    )
    try:
        await wait_for_port(port)
        async with sessions.begin() as session:
            created = await accounts.bootstrap_organization(
                session=session, org_name="Bench", project_name="Bench"
            )
            project_id = created.project.id
            tool = await tool_repo.create_tool(
                session=session, project_id=project_id, spec=measure_tool(port)
            )
            knowledge_set = await set_repo.create_set(
                session=session,
                project_id=project_id,
                spec=KnowledgeSetSpec.model_validate(
                    {
                        "name": "bench",
                        "columns": [
                            {"name": "text"},
                            {"name": "length", "type": "integer"},
                            {"name": "length_error"},
                        ],
                    }
                ),
            )
            for start in range(0, rows, 1000):
                await store.insert_rows(
                    session=session,
                    knowledge_set=knowledge_set,
                    rows=[
                        {"text": f"row number {i}"} for i in range(start, min(rows, start + 1000))
                    ],
                )
        kind = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
        print(f"enrich: {rows} rows, concurrency {concurrency}, batch {batch_size}, {kind}")

        plain_worker = Worker(
            env.client,
            task_queue="bench-plain",
            workflows=[PlainRowsWorkflow],
            activities=[noop_row],
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_concurrent_activities=concurrency,
        )
        async with plain_worker:
            started = time.perf_counter()
            await env.client.execute_workflow(
                PlainRowsWorkflow.run,
                PlainRows(rows=rows, concurrency=concurrency),
                id=f"plain-rows-{uuid.uuid4()}",
                task_queue="bench-plain",
            )
            plain_s = time.perf_counter() - started
        print(f"  plain, one activity per row  {rows} rows in {plain_s:6.2f}s")

        baton_worker = create_worker(
            env.client, task_queue="bench-enrich", session_factory=sessions, settings=settings
        )
        app = create_app(settings, temporal_client=env.client)
        async with baton_worker, app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url=f"http://bench/api/v1/projects/{project_id}",
                headers={"Authorization": f"Token {created.token}"},
            ) as api:
                enrich_s, job = await enrich(
                    api, knowledge_set.id, tool.id, concurrency, batch_size
                )
        print(f"  Baton enrichment             {rows} rows in {enrich_s:6.2f}s")
        assert job["status"] == "succeeded" and job["done"] == rows, job
    finally:
        server.terminate()
        server.wait(timeout=10)
        await env.shutdown()
        await engine.dispose()
        shutil.rmtree(data, ignore_errors=True)
    plain_rate, enrich_rate = rows / plain_s, rows / enrich_s
    print(f"plain:      {plain_rate:7.1f} rows/s")
    print(f"enrichment: {enrich_rate:7.1f} rows/s  ({enrich_s:.1f}s; target < 60s for 10,000)")
    print(f"ratio (enrichment / plain): {enrich_rate / plain_rate:.2f}  (target > 1.0)")
    figures = [
        {
            "name": f"enrichment of {rows} rows ({kind}, one-step HTTP tool)",
            "value": enrich_rate,
            "unit": "rows/s",
            "better": "higher",
            "baseline": {"name": "plain workflow, one no-op activity per row", "value": plain_rate},
        },
        {
            "name": f"enrichment of {rows} rows, wall time",
            "value": enrich_s,
            "unit": "s",
            "better": "lower",
        },
    ]
    print("BENCH_RESULT " + json.dumps({"benchmark": "enrich", "figures": figures}))


def measure_tool(port: int) -> ToolSpec:
    return ToolSpec.model_validate(
        {
            "name": "measure",
            "params": [{"name": "text"}],
            "steps": [
                {
                    "name": "measure",
                    "type": "http",
                    "method": "POST",
                    "url": f"http://127.0.0.1:{port}/measure",
                    "body": {"text": "{{ params.text }}"},
                }
            ],
        }
    )


async def enrich(
    api: httpx.AsyncClient, set_id: str, tool_id: str, concurrency: int, batch_size: int
) -> tuple[float, dict[str, object]]:
    """Seconds from the job's creation to its end, as a client of the API sees them."""
    url = f"/knowledge/sets/{set_id}/enrichments"
    started = time.perf_counter()
    response = await api.post(
        url,
        json={
            "tool_id": tool_id,
            "input_mapping": {"text": {"column": "text"}},
            "output_mapping": {"length": "body.length"},
            "concurrency": concurrency,
            "batch_size": batch_size,
        },
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    while True:
        job: dict[str, object] = (await api.get(f"{url}/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return time.perf_counter() - started, job
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--database-url", default="", help="Baton's database (default: a new SQLite file)"
    )
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        asyncio.run(main(args.rows, args.concurrency, args.batch_size, args.database_url))
