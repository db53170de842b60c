"""A stack of real processes per test, for tests that kill its parts: a Temporal dev server
on the test's own SQLite file, the API (`baton api`) and workers (`baton worker`) on a task
queue of their own, over the suite's database. Rows are scoped by a fresh tenant, so on
PostgreSQL the processes share the database with the rest of the suite safely."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from baton import temporal
from baton.db.repositories.tasks import workflow_id_for
from baton.domain.tasks import TaskStatus
from baton.settings import Settings
from tests.local_http import LocalHttp
from tests.processes import ApiProcess, Parts, TemporalDevServer, kill, start_worker
from tests.support import Tenant


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


class FaultStack:
    """The processes of one test and the calls its tests make through the real API."""

    def __init__(self, tmp_path: Path, parts: Parts, temporal: TemporalDevServer) -> None:
        self.tmp_path = tmp_path
        self.parts = parts
        self.temporal = temporal
        self.api = ApiProcess(parts, log=tmp_path / "api.log")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.client: httpx.AsyncClient

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.workers) + 1}.log"
        worker = start_worker(self.parts, log=log)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            kill(worker)
        self.api.kill()
        self.temporal.kill()

    def logs(self) -> str:
        """The children's logs, for a failing assertion's message."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}"
            for path in sorted(self.tmp_path.glob("*.log"))
        )

    async def effect_agent(
        self, tenant: Tenant, local_http: LocalHttp, seconds: float, *, retries: int = 2
    ) -> str:
        """An agent on the scripted model whose `effect` tool POSTs to the local server with
        an Idempotency-Key, taking `seconds` to answer: a side effect that can be counted.
        `retries`: the step's (a worker killed mid-call costs the call an attempt)."""
        tool = await self.client.post(
            tenant.url("/tools"),
            json={
                "name": "effect",
                "steps": [
                    {
                        "name": "post",
                        "type": "http",
                        "method": "POST",
                        "url": f"{local_http.base}/effect?seconds={seconds}",
                        "body": {"charge": 10},
                        "retries": retries,
                    }
                ],
                "output": "{{ steps.post.output.body.done }}",
            },
        )
        assert tool.status_code == 201, tool.text
        agent = await self.client.post(
            tenant.url("/agents"),
            json={
                "name": "Payer",
                "model": "scripted:tools",
                "tools": [{"tool_id": tool.json()["id"]}],
            },
        )
        assert agent.status_code == 201, agent.text
        agent_id: str = agent.json()["id"]
        return agent_id

    async def start_task(self, tenant: Tenant, agent_id: str, message: str) -> str:
        started = await self.client.post(
            tenant.url(f"/agents/{agent_id}/tasks"), json={"message": message}
        )
        assert started.status_code == 201, started.text
        task_id: str = started.json()["id"]
        return task_id

    async def describe(self, task_id: str) -> str:
        """What Temporal says a task's workflow (and the children it waits on) is waiting for:
        a stuck task's failure message says where it stuck."""
        try:
            client = await Client.connect(
                self.temporal.address, data_converter=temporal.data_converter(Settings())
            )
            lines = [f"--- workflow of task {task_id}"]
            ids = [workflow_id_for(task_id)]
            while ids:
                described = await client.get_workflow_handle(ids.pop()).describe()
                raw = described.raw_description
                lines.append(f"{described.id}: {described.status}")
                for pending in raw.pending_activities:
                    # A failure's message is encrypted with the payloads.
                    failure = ""
                    if pending.HasField("last_failure"):
                        decoded = await client.data_converter.decode_failure(pending.last_failure)
                        failure = str(decoded)
                    lines.append(
                        f"  activity {pending.activity_type.name} state={pending.state}"
                        f" attempt={pending.attempt} failure={failure!r}"
                    )
                for child in raw.pending_children:
                    lines.append(f"  child {child.workflow_id} ({child.workflow_type_name})")
                    ids.append(child.workflow_id)
            return "\n".join(lines)
        except Exception as exc:  # a diagnostic: never hide the failure it explains
            return f"--- workflow of task {task_id}: not described ({exc!r})"

    async def wait_final(
        self, tenant: Tenant, task_ids: list[str], timeout: float
    ) -> list[dict[str, Any]]:
        """Every task as the API shows it once final; retries while the API itself is down."""
        final: dict[str, dict[str, Any]] = {}
        try:
            async with asyncio.timeout(timeout):
                while len(final) < len(task_ids):
                    for task_id in task_ids:
                        if task_id in final:
                            continue
                        try:
                            response = await self.client.get(tenant.url(f"/tasks/{task_id}"))
                        except httpx.TransportError:
                            continue
                        task = response.json()
                        if TaskStatus(task["status"]).is_final:
                            final[task_id] = task
                    await asyncio.sleep(0.2)
        except TimeoutError:
            pending = [t for t in task_ids if t not in final]
            stuck = "\n".join([await self.describe(t) for t in pending])
            raise AssertionError(f"tasks not final: {pending}\n{stuck}\n{self.logs()}") from None
        return [final[task_id] for task_id in task_ids]


@pytest.fixture
async def stack(
    migrated_database: str, tmp_path: Path, tenant: Tenant
) -> AsyncIterator[FaultStack]:
    """Temporal and the API running, no worker yet: each test starts (and kills) its own."""
    temporal = TemporalDevServer(tmp_path)
    parts = Parts(
        database_url=migrated_database,
        temporal_address=temporal.address,
        task_queue=f"faults-{uuid.uuid4()}",
        data_dir=tmp_path,
    )
    running = FaultStack(tmp_path, parts, temporal)
    try:
        # The API's Temporal client is lazy: both parts can start at once.
        await asyncio.gather(temporal.start(), running.api.start())
        async with httpx.AsyncClient(
            base_url=running.api.base, headers=tenant.headers, timeout=10
        ) as client:
            running.client = client
            yield running
    finally:
        running.stop()
