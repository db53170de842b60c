"""A crash loses nothing: a worker process killed with SIGKILL in the middle of a task's
tool call, a new worker started, and the task finishes with the side effect done once."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests import processes
from tests.local_http import LocalHttp, hit_count
from tests.processes import kill, wait_until
from tests.support import Tenant


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


def start_worker(settings: Settings, temporal_env: WorkflowEnvironment) -> subprocess.Popen[bytes]:
    return processes.start_worker(
        processes.Parts(
            database_url=settings.resolved_database_url,
            temporal_address=temporal_env.client.service_client.config.target_host,
            task_queue=settings.temporal_task_queue,
            data_dir=settings.data_dir,
        )
    )


async def test_a_worker_killed_mid_tool_call_is_replaced_and_the_effect_happens_once(
    api: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    local_http: LocalHttp,
):
    local_http.reset()
    local_http.effects.clear()
    tool = await api.post(
        tenant.url("/tools"),
        json={
            "name": "effect",
            "steps": [
                {
                    "name": "post",
                    "type": "http",
                    "method": "POST",
                    "url": local_http.base + "/effect?seconds=1.5",
                    "body": {"charge": 10},
                }
            ],
            "output": "{{ steps.post.output.body.done }}",
        },
        headers=tenant.headers,
    )
    agent = await api.post(
        tenant.url("/agents"),
        json={
            "name": "Payer",
            "model": "scripted:tools",
            "tools": [{"tool_id": tool.json()["id"]}],
        },
        headers=tenant.headers,
    )
    first = start_worker(settings, temporal_env)
    second = None
    try:
        started = await api.post(
            tenant.url(f"/agents/{agent.json()['id']}/tasks"),
            json={"message": "call effect"},
            headers=tenant.headers,
        )
        task_id = started.json()["id"]
        # The tool's request is in flight: kill the worker in the middle of it.
        await wait_until(lambda: hit_count(local_http, "/effect") >= 1, 60, "the tool's request")
        kill(first)

        second = start_worker(settings, temporal_env)
        async with asyncio.timeout(90):
            while True:
                task = (
                    await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
                ).json()
                if task["status"] in ("completed", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.2)
    finally:
        kill(first)
        kill(second)

    assert task["status"] == "completed", task["error"]
    assert [m["role"] for m in task["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert task["messages"][2]["content"] == "true"
    # The request was sent again after the crash, with the same idempotency key, so a
    # receiver that honours the key performed the effect once.
    assert len(local_http.effects) == 1
    assert sum(local_http.effects.values()) == hit_count(local_http, "/effect") >= 1
