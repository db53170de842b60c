"""Times from the organisation's plan: a tool run may take `tool_run_seconds`, an agent may
work `agent_seconds_per_message` on one user message. Past either, the run or the task
stops with a reason that names the limit; through the API, a real worker and, for the
model, a local server that speaks OpenAI's wire protocol and holds its answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from baton.domain.tasks import AgentTaskInput, task_workflow_id
from baton.services.tasks import AGENT_TASK_WORKFLOW
from baton.settings import Settings
from tests.fakes import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.support import Tenant, app_with_worker, on_plan, with_plans
from tests.test_agent_tasks import FINAL, make_agent, start, wait_for
from tests.test_tools import save, wait_for_run

Sessions = async_sessionmaker[AsyncSession]
PLANS = """
quick:
  tool_run_seconds: 1
  agent_seconds_per_message: 2
# The same tool limit, with time enough for the agent to answer however busy the machine.
quick-tools:
  tool_run_seconds: 1
  agent_seconds_per_message: 120
"""


@pytest.fixture
def quick_settings(settings: Settings, tmp_path: Path, openai_server: FakeOpenAI) -> Settings:
    openai_server.reset()
    return with_plans(
        settings,
        tmp_path,
        PLANS,
        openai_api_key="sk-test-secret-key-123456",
        openai_base_url=openai_server.base_url,
    )


@pytest.fixture
async def quick_api(
    quick_settings: Settings, temporal_env: WorkflowEnvironment, session_factory: Sessions
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_with_worker(quick_settings, temporal_env.client, session_factory) as client:
        yield client


SLOW_TOOL = {
    "name": "Slow tool",
    "description": "Waits a long time",
    "steps": [
        {"name": "hold", "type": "delay", "seconds": 60},
        {"name": "say", "type": "template", "template": "done"},
    ],
}


async def test_a_tool_run_longer_than_the_plans_tool_run_seconds_fails_naming_the_limit(
    quick_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    temporal_env: WorkflowEnvironment,
):
    tool = await save(quick_api, tenant, SLOW_TOOL)
    await on_plan(session_factory, tenant, "quick")
    started = await quick_api.post(
        tenant.url(f"/tools/{tool['id']}/runs"), json={}, headers=tenant.headers
    )
    assert started.status_code == 201, started.text

    body = await wait_for_run(quick_api, tenant, started.json()["id"], timeout=30)
    assert body["status"] == "failed"
    assert body["error"] == "step hold: the run took longer than its plan's tool_run_seconds (1 s)"
    handle = temporal_env.client.get_workflow_handle(body["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()  # the record is written a moment before the run ends
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


async def test_a_tool_run_within_the_plans_time_succeeds(
    quick_api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    quick = {**SLOW_TOOL, "steps": [{"name": "say", "type": "template", "template": "done"}]}
    tool = await save(quick_api, tenant, quick)
    await on_plan(session_factory, tenant, "quick")
    started = await quick_api.post(
        tenant.url(f"/tools/{tool['id']}/runs"), json={}, headers=tenant.headers
    )
    body = await wait_for_run(quick_api, tenant, started.json()["id"], timeout=30)
    assert (body["status"], body["output"]) == ("succeeded", "done")


async def test_an_agents_tool_call_gets_the_plans_tool_run_time_and_the_task_goes_on(
    quick_api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    tool = await save(quick_api, tenant, SLOW_TOOL)
    agent = await make_agent(quick_api, tenant, tools=[{"tool_id": tool["id"]}])
    await on_plan(session_factory, tenant, "quick")
    task_id = await start(quick_api, tenant, agent, "call slow_tool {}")

    task = await wait_for(quick_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    told = task["messages"][2]
    assert told["role"] == "tool"
    assert "tool_run_seconds (1 s)" in told["content"]


async def test_an_agent_longer_than_the_plans_seconds_per_message_times_out_naming_it(
    quick_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    openai_server: FakeOpenAI,
    temporal_env: WorkflowEnvironment,
):
    # The model thinks far longer than the plan lets the agent work on a message.
    openai_server.queue(Reply(delay=30))
    agent = await make_agent(quick_api, tenant, tools=[], model="openai:gpt-test")
    await on_plan(session_factory, tenant, "quick")
    task_id = await start(quick_api, tenant, agent, "Think hard")

    task = await wait_for(quick_api, tenant, task_id, FINAL, timeout=20)
    assert task["status"] == "timed-out"
    assert task["error"] == (
        "the agent took longer to answer a message than its plan's agent_seconds_per_message (2 s)"
    )
    handle = temporal_env.client.get_workflow_handle(task["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()  # the record is written a moment before the run ends
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


async def test_an_agent_on_a_plan_with_time_left_answers(
    quick_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    openai_server: FakeOpenAI,
):
    openai_server.reply_text("Quick answer.")
    agent = await make_agent(quick_api, tenant, tools=[], model="openai:gpt-test")
    await on_plan(session_factory, tenant, "quick")
    task_id = await start(quick_api, tenant, agent, "Be quick")

    task = await wait_for(quick_api, tenant, task_id, FINAL | {"idle"}, timeout=20)
    assert task["status"] in ("idle", "completed"), task["error"]
    assert task["messages"][-1]["content"] == "Quick answer."


async def test_a_task_started_without_its_plans_times_takes_them_as_it_begins(
    quick_api: httpx.AsyncClient,
    quick_settings: Settings,
    tenant: Tenant,
    session_factory: Sessions,
    temporal_env: WorkflowEnvironment,
):
    # As a schedule starts a task: the agent and the plan are read when the task begins.
    tool = await save(quick_api, tenant, SLOW_TOOL)
    agent = await make_agent(quick_api, tenant, tools=[{"tool_id": tool["id"]}])
    await on_plan(session_factory, tenant, "quick-tools")
    task_id = str(uuid.uuid4())
    await temporal_env.client.start_workflow(
        AGENT_TASK_WORKFLOW,
        AgentTaskInput(
            task_id=task_id,
            project_id=tenant.project_id,
            agent_id=agent,
            message="call slow_tool {}",
        ),
        id=task_workflow_id(task_id),
        task_queue=quick_settings.temporal_task_queue,
    )

    async with asyncio.timeout(10):  # the row is written as the task begins
        while (
            await quick_api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
        ).status_code == 404:
            await asyncio.sleep(0.1)
    task = await wait_for(quick_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert "tool_run_seconds (1 s)" in task["messages"][2]["content"]
