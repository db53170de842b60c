"""The concurrency quota: an organisation whose plan sets `max_concurrent_tasks` runs that
many tasks at once; the others wait in `queued` ("waiting for capacity") and start in the
order they were created as the running ones end. Each task here holds its slot by waiting
for the approval of a tool call, so the test decides when it ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from baton import temporal
from baton.db.tables import Task
from baton.settings import Settings
from tests.support import Tenant, api_client, on_plan, with_plans, worker_on
from tests.test_agent_tasks import FINAL, make_agent, make_tool, start, wait_for
from tests.test_credits import baton_cli
from tests.test_delegation import Desk

Sessions = async_sessionmaker[AsyncSession]
PLANS = """
one_at_a_time:
  max_concurrent_tasks: 1
two_at_a_time:
  max_concurrent_tasks: 2
"""
WAITING = "waiting for capacity"


@pytest.fixture
def quota_settings(settings: Settings, tmp_path: Path) -> Settings:
    return with_plans(settings, tmp_path, PLANS)


@pytest.fixture
async def api_alone(
    quota_settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the plans above, with no worker: each test brings its own."""
    async with api_client(quota_settings, temporal_env.client) as client:
        yield client


@pytest.fixture
async def api(
    api_alone: httpx.AsyncClient,
    quota_settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: Sessions,
) -> AsyncIterator[httpx.AsyncClient]:
    async with worker_on(temporal_env.client, quota_settings, session_factory):
        yield api_alone


async def held_agent(api: httpx.AsyncClient, tenant: Tenant) -> str:
    """An agent whose task waits for a person to approve its one tool call."""
    tool = await make_tool(api, tenant)
    return await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])


async def start_held(api: httpx.AsyncClient, tenant: Tenant, agent: str, text: str) -> str:
    return await start(api, tenant, agent, f"call echo_tool {json.dumps({'text': text})}")


async def read(api: httpx.AsyncClient, tenant: Tenant, task_id: str) -> dict[str, Any]:
    response = await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def waits_for_capacity(
    api: httpx.AsyncClient, tenant: Tenant, task_id: str, timeout: float = 30
) -> dict[str, Any]:
    """The task, once it is queued waiting for capacity (its workflow began and was refused
    a slot); fails if it runs or ends instead."""
    async with asyncio.timeout(timeout):
        while True:
            task = await read(api, tenant, task_id)
            assert task["status"] == "queued", task
            if task["details"] == WAITING:
                return task
            await asyncio.sleep(0.05)


async def approve(api: httpx.AsyncClient, tenant: Tenant, task_id: str) -> None:
    task = await wait_for(api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert task["status"] == "waiting-approval", task
    [pending] = task["pending_approvals"]
    approved = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/{pending['call_id']}"),
        json={"approve": True},
        headers=tenant.headers,
    )
    assert approved.status_code == 200, approved.text


async def statuses_said(api: httpx.AsyncClient, tenant: Tenant, task_id: str) -> list[str]:
    """The `task.status` events of a finished task, through the API's event stream (which
    ends with the task), each as `status` or `status: details`."""
    said = []
    async with api.stream(
        "GET", tenant.url(f"/tasks/{task_id}/events"), headers=tenant.headers
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:"))
                if event["type"] == "task.status":
                    data = event["data"]
                    details = data.get("details")
                    said.append(f"{data['status']}: {details}" if details else data["status"])
    return said


async def test_tasks_over_the_quota_wait_queued_and_start_in_order_as_others_finish(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, session_factory: Sessions
):
    tenant = await on_plan(session_factory, tenant, "one_at_a_time")
    agent = await held_agent(api, tenant)
    first = await start_held(api, tenant, agent, "first")
    await wait_for(api, tenant, first, {"waiting-approval"})
    second = await start_held(api, tenant, agent, "second")
    third = await start_held(api, tenant, agent, "third")
    await waits_for_capacity(api, tenant, second)
    await waits_for_capacity(api, tenant, third)

    # Another organisation on the same plan has its own slot.
    other = await on_plan(session_factory, other_tenant, "one_at_a_time")
    others_task = await start_held(api, other, await held_agent(api, other), "elsewhere")
    await wait_for(api, other, others_task, {"waiting-approval"})
    # Nor does it see this one's queue.
    peek = await api.get(tenant.url(f"/tasks/{second}"), headers=other.headers)
    assert peek.status_code == 404

    await approve(api, tenant, first)
    assert (await wait_for(api, tenant, first, FINAL))["status"] == "completed"
    await wait_for(api, tenant, second, {"waiting-approval"})
    assert (await read(api, tenant, third))["details"] == WAITING

    await approve(api, tenant, second)
    await wait_for(api, tenant, third, {"waiting-approval"})
    await approve(api, tenant, third)
    done = await wait_for(api, tenant, third, FINAL)
    assert done["status"] == "completed", done["error"]
    assert done["details"] is None
    assert [m["content"] for m in done["messages"] if m["role"] == "tool"] == ["tool got third"]
    said = await statuses_said(api, tenant, third)
    assert said[0] == f"queued: {WAITING}" and said[-1] == "completed", said
    assert f"queued: {WAITING}" not in await statuses_said(api, tenant, first)


async def test_two_workers_admit_no_more_tasks_than_the_plan_allows(
    api_alone: httpx.AsyncClient,
    quota_settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: Sessions,
    tenant: Tenant,
):
    api = api_alone
    tenant = await on_plan(session_factory, tenant, "two_at_a_time")
    # A client of its own, as a second worker process would have.
    second_client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=temporal.data_converter(quota_settings),
    )
    async with (
        worker_on(temporal_env.client, quota_settings, session_factory),
        worker_on(second_client, quota_settings, session_factory),
    ):
        agent = await held_agent(api, tenant)
        tasks = await asyncio.gather(
            *(start_held(api, tenant, agent, f"task {n}") for n in range(6))
        )
        remaining = list(tasks)
        while remaining:
            running, queued = await settle(api, tenant, remaining)
            assert len(running) == min(2, len(remaining)), (running, queued)
            for task_id in running:
                await approve(api, tenant, task_id)
            for task_id in running:
                assert (await wait_for(api, tenant, task_id, FINAL))["status"] == "completed"
            remaining = queued


async def settle(
    api: httpx.AsyncClient, tenant: Tenant, task_ids: list[str]
) -> tuple[list[str], list[str]]:
    """Waits until each task either waits for approval (it holds a slot) or for capacity,
    and a moment more to see that no queued task slips through: those that run, those
    queued."""
    async with asyncio.timeout(30):
        while True:
            tasks = [await read(api, tenant, task_id) for task_id in task_ids]
            if all(t["status"] == "waiting-approval" or t["details"] == WAITING for t in tasks):
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    tasks = [await read(api, tenant, task_id) for task_id in task_ids]
    running = [t["id"] for t in tasks if t["status"] != "queued"]
    return running, [t["id"] for t in tasks if t["status"] == "queued"]


async def test_a_queued_task_can_be_cancelled_and_frees_no_slot_it_did_not_hold(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    tenant = await on_plan(session_factory, tenant, "one_at_a_time")
    agent = await held_agent(api, tenant)
    first = await start_held(api, tenant, agent, "first")
    await wait_for(api, tenant, first, {"waiting-approval"})
    second = await start_held(api, tenant, agent, "second")
    third = await start_held(api, tenant, agent, "third")
    await waits_for_capacity(api, tenant, second)
    await waits_for_capacity(api, tenant, third)

    cancelled = await api.post(tenant.url(f"/tasks/{second}/cancel"), headers=tenant.headers)
    assert cancelled.status_code == 202, cancelled.text
    assert (await wait_for(api, tenant, second, FINAL))["status"] == "cancelled"
    await asyncio.sleep(0.5)
    assert (await read(api, tenant, first))["status"] == "waiting-approval"
    assert (await read(api, tenant, third))["details"] == WAITING

    await approve(api, tenant, first)
    await approve(api, tenant, third)
    assert (await wait_for(api, tenant, third, FINAL))["status"] == "completed"


async def test_an_organisation_without_a_limit_never_queues(api: httpx.AsyncClient, tenant: Tenant):
    agent = await held_agent(api, tenant)
    tasks = [await start_held(api, tenant, agent, f"task {n}") for n in range(3)]
    for task_id in tasks:
        await wait_for(api, tenant, task_id, {"waiting-approval"})


async def test_a_new_plan_from_the_command_line_lets_waiting_tasks_start_at_once(
    api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    quota_settings: Settings,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
):
    tenant = await on_plan(session_factory, tenant, "one_at_a_time")
    agent = await held_agent(api, tenant)
    first = await start_held(api, tenant, agent, "first")
    await wait_for(api, tenant, first, {"waiting-approval"})
    second = await start_held(api, tenant, agent, "second")
    await waits_for_capacity(api, tenant, second)

    assert quota_settings.plans_file is not None
    monkeypatch.setenv("BATON_PLANS_FILE", str(quota_settings.plans_file))
    planned = await asyncio.to_thread(
        baton_cli,
        quota_settings,
        "plan",
        "--org",
        str(tenant.org_id),
        "two_at_a_time",
        temporal_address=temporal_env.client.service_client.config.target_host,
    )
    assert planned.returncode == 0, planned.stderr
    assert "1 queued task(s) told to ask for capacity" in planned.stderr
    # Long before its own re-check (CAPACITY_RECHECK), while the first still runs.
    await wait_for(api, tenant, second, {"waiting-approval"}, timeout=20)
    assert (await read(api, tenant, first))["status"] == "waiting-approval"


async def test_a_delegation_is_not_queued_behind_the_task_that_waits_for_it(
    api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    quota_settings: Settings,
    temporal_env: WorkflowEnvironment,
):
    tenant = await on_plan(session_factory, tenant, "one_at_a_time")
    desk = Desk(api, tenant, temporal_env, quota_settings, session_factory)
    _, spec = await desk.triage_and_billing(when="Billing questions")
    task_id, handle = await desk.start(spec, 'call ask_billing {"message": "refund?"}')
    async with asyncio.timeout(30):
        task = await desk.completed(task_id, handle)
    [child] = await desk.children(task_id)
    assert child.status == "completed" and child.capacity is None
    async with session_factory() as session:
        caller = await session.get(Task, task_id)
    assert caller is not None and caller.capacity == "released"  # it held the one slot
    assert "ask_billing:" in task["messages"][-1]["content"]
