"""A crash loses nothing: a worker process killed with SIGKILL in the middle of a task's
tool call, a new worker started, and the task finishes with the side effect done once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.conftest import Tenant
from tests.local_http import LocalHttp, hit_count


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


def start_worker(settings: Settings, temporal_env: WorkflowEnvironment) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update(
        {
            "BATON_DATABASE_URL": settings.resolved_database_url,
            "BATON_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
            "BATON_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "BATON_HTTP_ALLOW_NETWORKS": json.dumps(["127.0.0.0/8"]),
            "BATON_DATA_DIR": str(settings.data_dir),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "baton", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


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
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)

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
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    assert task["status"] == "completed", task["error"]
    assert [m["role"] for m in task["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert task["messages"][2]["content"] == "true"
    # The request was sent again after the crash, with the same idempotency key, so a
    # receiver that honours the key performed the effect once.
    assert len(local_http.effects) == 1
    assert sum(local_http.effects.values()) == hit_count(local_http, "/effect") >= 1
