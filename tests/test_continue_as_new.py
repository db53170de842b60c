"""A long conversation continues as new with its transcript carried over. A dev server of its
own suggests continue-as-new after 100 history events, so it happens within a few turns."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.support import Tenant, api_client, worker_on


async def test_a_long_conversation_continues_as_new_and_keeps_its_transcript(
    eager_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    async with (
        worker_on(eager_env.client, settings, session_factory),
        api_client(settings, eager_env.client) as api,
    ):
        await converse(api, tenant, eager_env)


async def converse(api: httpx.AsyncClient, tenant: Tenant, env: WorkflowEnvironment) -> None:
    agent = await api.post(
        tenant.url("/agents"),
        json={"name": "Chatty", "model": "scripted:echo", "idle_timeout_seconds": 60},
        headers=tenant.headers,
    )
    started = await api.post(
        tenant.url(f"/agents/{agent.json()['id']}/tasks"),
        json={"message": "turn 0"},
        headers=tenant.headers,
    )
    task_id, workflow_id = started.json()["id"], started.json()["workflow_id"]
    handle = env.client.get_workflow_handle(workflow_id)
    first_run = (await handle.describe()).run_id

    async def answered(count: int) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                task: dict[str, Any] = (
                    await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
                ).json()
                if task["status"] == "idle" and len(task["messages"]) == 2 * count:
                    return task
                await asyncio.sleep(0.1)

    await answered(1)
    turns = 1
    while (await handle.describe()).run_id == first_run:
        assert turns < 15, "no continue-as-new after 15 turns"
        await api.post(
            tenant.url(f"/tasks/{task_id}/messages"),
            json={"message": f"turn {turns}"},
            headers=tenant.headers,
        )
        turns += 1
        await answered(turns)

    # The new run answers the next message and the transcript is whole and in order.
    await api.post(
        tenant.url(f"/tasks/{task_id}/messages"),
        json={"message": "after"},
        headers=tenant.headers,
    )
    task = await answered(turns + 1)
    users = [m["content"] for m in task["messages"] if m["role"] == "user"]
    assert users == [f"turn {i}" for i in range(turns)] + ["after"]
    assert task["messages"][-1]["content"].endswith("You said: after")
    await api.post(tenant.url(f"/tasks/{task_id}/cancel"), headers=tenant.headers)
