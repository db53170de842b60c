"""A cancelled task stops its work within 2 s: the model provider's connection closes (a real
provider would stop generating, and billing), so does an http step's, and a code step's process
ends. Each is measured from `POST .../cancel` against a local server that notes when the client
hung up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.local_http import LocalHttp
from tests.processes import processes_named, unique_process_name
from tests.support import Tenant, api_client, eventually, worker_on
from tests.support.factories import task_in

# Each bounds how long stopping takes: under xdist they share a worker with the other such tests.
pytestmark = pytest.mark.xdist_group("timing")

# What the issue asks: the work stops within this long of the cancel.
STOPS_WITHIN_S = 2.0


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


@pytest.fixture
async def api(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    openai_server: FakeOpenAI,
) -> AsyncIterator[httpx.AsyncClient]:
    openai_server.reset()
    configured = settings.model_copy(
        update={
            "openai_api_key": "sk-test-cancel",
            "openai_base_url": openai_server.base_url,
            "http_allow_networks": ["127.0.0.0/8"],
            "code_wall_seconds": 60.0,
        }
    )
    async with (
        worker_on(temporal_env.client, configured, session_factory),
        api_client(configured, temporal_env.client) as client,
    ):
        yield client


async def start_task(
    api: httpx.AsyncClient, tenant: Tenant, message: str, **agent: Any
) -> dict[str, Any]:
    created = await api.post(
        tenant.url("/agents"),
        json={"name": "Worker", "model": "scripted:tools", **agent},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    started = await api.post(
        tenant.url(f"/agents/{created.json()['id']}/tasks"),
        json={"message": message},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    task: dict[str, Any] = started.json()
    return task


async def new_tool(api: httpx.AsyncClient, tenant: Tenant, step: dict[str, Any]) -> str:
    created = await api.post(
        tenant.url("/tools"), json={"name": "Slow", "steps": [step]}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    tool_id: str = created.json()["id"]
    return tool_id


async def cancel(api: httpx.AsyncClient, tenant: Tenant, task: dict[str, Any]) -> float:
    """Cancels the task; when the cancel was sent (time.monotonic())."""
    sent = time.monotonic()
    response = await api.post(tenant.url(f"/tasks/{task['id']}/cancel"), headers=tenant.headers)
    assert response.status_code == 202, response.text
    return sent


async def test_a_cancel_closes_the_model_providers_connection_within_2_s(
    api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
):
    openai_server.reply_text("never", "sent")
    openai_server.replies[-1].delay = 60  # the model thinks for a minute
    task = await start_task(api, tenant, "hello", model="openai:gpt-test")
    await eventually(lambda: openai_server.requests)
    await asyncio.sleep(1.5)  # well into the call, past its first heartbeats

    sent = await cancel(api, tenant, task)
    await eventually(lambda: openai_server.hung_up_at)
    took = openai_server.hung_up_at[0] - sent
    assert took < STOPS_WITHIN_S, f"model call closed {took:.2f} s after the cancel"
    await task_in(api, tenant, task["id"], {"cancelled"}, timeout=15)


async def test_a_cancel_closes_an_http_steps_connection_within_2_s(
    api: httpx.AsyncClient, tenant: Tenant, local_http: LocalHttp
):
    local_http.hung_up_at.clear()
    tool_id = await new_tool(
        api,
        tenant,
        {"name": "wait", "type": "http", "url": f"{local_http.base}/slow?seconds=60"},
    )
    task = await start_task(api, tenant, "call slow {}", tools=[{"tool_id": tool_id}])
    await eventually(lambda: local_http.hits.get("/slow?seconds=60"))
    await asyncio.sleep(1.5)

    sent = await cancel(api, tenant, task)
    await eventually(lambda: local_http.hung_up_at)
    took = local_http.hung_up_at[0] - sent
    assert took < STOPS_WITHIN_S, f"http step closed {took:.2f} s after the cancel"
    await task_in(api, tenant, task["id"], {"cancelled"}, timeout=15)


async def test_a_cancel_ends_a_code_steps_process_within_2_s(
    api: httpx.AsyncClient, tenant: Tenant
):
    name = unique_process_name()
    code = (
        "import time\n"
        f"open('/proc/self/comm', 'w').write({name!r})\n"
        "time.sleep(60)\n"
        "result = 'late'\n"
    )
    tool_id = await new_tool(api, tenant, {"name": "wait", "type": "code", "code": code})
    task = await start_task(api, tenant, "call slow {}", tools=[{"tool_id": tool_id}])
    await eventually(lambda: processes_named(name), timeout=20)
    await asyncio.sleep(1.5)

    sent = await cancel(api, tenant, task)
    await eventually(lambda: not processes_named(name), every=0.02)
    took = time.monotonic() - sent
    assert took < STOPS_WITHIN_S, f"code step ended {took:.2f} s after the cancel"
    await task_in(api, tenant, task["id"], {"cancelled"}, timeout=15)
