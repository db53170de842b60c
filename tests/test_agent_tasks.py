"""The agent loop: a task calls tools, waits for approvals, takes follow-ups, streams, and
ends; through the real Temporal server, a real worker and, for OpenAI, a local server that
speaks its wire protocol."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import events as event_repo
from baton.domain.models import SCRIPTED_LABEL
from baton.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic, ToolUse
from tests.fakes.openai_server import FakeOpenAI, chunk, tool_calls, tool_delta, usage_chunk
from tests.support import Tenant, api_client, assert_error, auth, histories_of, worker_on
from tests.support.factories import FINAL, make_agent, make_tool, start_task, task_in

# Other test modules import these from here; they live in tests/support/factories.py.
start, wait_for = start_task, task_in


async def test_the_agent_calls_a_tool_and_answers_from_its_result(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "hi"}')

    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    roles = [m["role"] for m in task["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = task["messages"][1]["tool_calls"][0]
    assert (call["name"], call["arguments"]) == ("echo_tool", {"text": "hi"})
    assert task["messages"][2]["content"] == "tool got hi"
    assert task["messages"][3]["content"].startswith(SCRIPTED_LABEL)
    assert "echo_tool: tool got hi" in task["messages"][3]["content"]
    assert task["usage"]["input_tokens"] > 0 and task["usage"]["output_tokens"] > 0


async def test_an_agents_tool_run_is_kept_like_any_run(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "kept"}')
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]

    # Found in Temporal by its project, like a run the API started...
    query = f"BatonProject = '{tenant.project_id}' AND BatonKind = 'tool-run'"
    found = [run.id async for run in temporal_env.client.list_workflows(query)]
    assert len(found) == 1, found
    # ... and readable through the API, with its output and steps.
    run_id = found[0].removeprefix("tool-run-")
    run = await api.get(tenant.url(f"/tool-runs/{run_id}"), headers=tenant.headers)
    assert run.status_code == 200, run.text
    body = run.json()
    assert (body["status"], body["tool_id"], body["output"]) == ("succeeded", tool, "tool got kept")
    assert body["params"] == {"text": "kept"}
    assert [step["name"] for step in body["steps"]] == ["say"]


async def test_a_tasks_workflow_reads_as_a_conversation_in_the_temporal_ui(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    agent = await make_agent(api, tenant, tools=[])
    message = "Where is my order 4417? It should   have arrived on Monday, and it has not come yet"
    task_id = await start_task(api, tenant, agent, message)
    task = await task_in(api, tenant, task_id, FINAL)
    handle = temporal_env.client.get_workflow_handle(task["workflow_id"])
    summary = await (await handle.describe()).static_summary()
    assert summary == "Helper: Where is my order 4417? It should have arrived on Monday…"


async def test_several_calls_in_one_turn_all_run(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(
        api, tenant, agent, 'call echo_tool {"text": "a"}\ncall echo_tool {"text": "b"}'
    )
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert [m["content"] for m in task["messages"] if m["role"] == "tool"] == [
        "tool got a",
        "tool got b",
    ]


async def test_bad_calls_are_told_to_the_model_not_crashes(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(
        api, tenant, agent, "call nowhere {}\ncall echo_tool {not json\ncall echo_tool {}"
    )
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    results = [m["content"] for m in task["messages"] if m["role"] == "tool"]
    assert "no tool named 'nowhere'" in results[0]
    assert "not valid JSON" in results[1]
    assert "invalid arguments" in results[2] and "text" in results[2]


async def test_an_approval_pauses_the_task_until_someone_approves(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "risky"}')

    waiting = await task_in(api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval"
    [pending] = waiting["pending_approvals"]
    assert (pending["tool"], pending["arguments"]) == ("echo_tool", {"text": "risky"})

    unknown = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/nope"),
        json={"approve": True},
        headers=tenant.headers,
    )
    assert_error(unknown, 404)
    approved = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/{pending['call_id']}"),
        json={"approve": True, "arguments": {"text": "edited"}},
        headers=tenant.headers,
    )
    assert approved.status_code == 200, approved.text
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert [m["content"] for m in task["messages"] if m["role"] == "tool"] == ["tool got edited"]


async def test_a_finished_call_shows_while_another_of_its_turn_waits_for_approval(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    lookup = await make_tool(api, tenant, name="Look up")
    risky = await make_tool(api, tenant, name="Risky")
    agent = await make_agent(
        api,
        tenant,
        tools=[{"tool_id": risky, "approval": "required"}, {"tool_id": lookup}],
    )
    task_id = await start_task(
        api, tenant, agent, 'call risky {"text": "later"}\ncall look_up {"text": "now"}'
    )
    waiting = await task_in(api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval"
    # The lookup's result is in the conversation before the risky call is decided.
    async with asyncio.timeout(10):
        while "tool got now" not in [m["content"] for m in waiting["messages"]]:
            await asyncio.sleep(0.1)
            waiting = (
                await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
            ).json()
    assert waiting["status"] == "waiting-approval"

    [pending] = waiting["pending_approvals"]
    approved = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/{pending['call_id']}"),
        json={"approve": True},
        headers=tenant.headers,
    )
    assert approved.status_code == 200, approved.text
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    # Each result keeps the place of its call, whichever finished first.
    assert [m["content"] for m in task["messages"] if m["role"] == "tool"] == [
        "tool got later",
        "tool got now",
    ]
    assert [m["role"] for m in task["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


async def test_a_rejection_is_told_to_the_model_and_the_task_goes_on(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "x"}')
    waiting = await task_in(api, tenant, task_id, {"waiting-approval"})
    call_id = waiting["pending_approvals"][0]["call_id"]
    viewer = (
        await api.post(
            "/api/v1/tokens", json={"name": "v", "role": "viewer"}, headers=tenant.headers
        )
    ).json()["token"]
    forbidden = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/{call_id}"),
        json={"approve": True},
        headers=auth(viewer),
    )
    assert_error(forbidden, 403)

    await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/{call_id}"),
        json={"approve": False, "reason": "too risky"},
        headers=tenant.headers,
    )
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed"
    tool_message = next(m for m in task["messages"] if m["role"] == "tool")
    assert tool_message["content"] == "The user rejected this call: too risky."
    assert "rejected" in task["messages"][-1]["content"]


async def test_the_agent_decides_when_it_needs_approval(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "agent_decides"}])
    fine = await start_task(api, tenant, agent, 'call echo_tool {"text": "safe"}')
    assert (await task_in(api, tenant, fine, FINAL))["status"] == "completed"
    asks = await start_task(
        api, tenant, agent, 'call echo_tool {"text": "big", "needs_approval": true}'
    )
    waiting = await task_in(api, tenant, asks, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval"
    assert waiting["pending_approvals"][0]["arguments"] == {"text": "big"}


async def test_a_follow_up_gets_its_own_answer_and_the_idle_task_completes_later(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await make_agent(api, tenant, tools=[], model="scripted:echo", idle_timeout_seconds=3)
    task_id = await start_task(api, tenant, agent, "first")
    idle = await task_in(api, tenant, task_id, {"idle"} | FINAL)
    assert idle["status"] == "idle"

    sent = await api.post(
        tenant.url(f"/tasks/{task_id}/messages"), json={"message": "second"}, headers=tenant.headers
    )
    assert sent.status_code == 202
    async with asyncio.timeout(20):
        while True:
            task = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
            if task["messages"][-1]["content"].endswith("You said: second"):
                break
            await asyncio.sleep(0.1)
    done = await task_in(api, tenant, task_id, FINAL, timeout=30)
    assert done["status"] == "completed"
    assert [m["role"] for m in done["messages"]] == ["user", "assistant", "user", "assistant"]
    late = await api.post(
        tenant.url(f"/tasks/{task_id}/messages"), json={"message": "late"}, headers=tenant.headers
    )
    assert_error(late, 409)


async def test_a_cancelled_task_stops_while_it_waits(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "x"}')
    await task_in(api, tenant, task_id, {"waiting-approval"})
    cancelled = await api.post(tenant.url(f"/tasks/{task_id}/cancel"), headers=tenant.headers)
    assert cancelled.status_code == 202
    assert (await task_in(api, tenant, task_id, FINAL))["status"] == "cancelled"


async def test_an_agent_with_an_unknown_tool_is_refused(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.post(
        tenant.url("/agents"),
        json={"name": "A", "tools": [{"tool_id": "missing"}]},
        headers=tenant.headers,
    )
    body = assert_error(response, 422)
    assert body["error"]["details"][0]["field"] == "tools[0].tool_id"


async def test_a_user_group_sees_and_messages_only_its_own_tasks(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await make_agent(api, tenant, tools=[], model="scripted:echo", idle_timeout_seconds=30)
    tokens = {}
    for group in ("acme", "globex"):
        created = await api.post(
            "/api/user", json={"name": group, "provided_id": group}, headers=tenant.headers
        )
        tokens[group] = created.json()["user_group"]["token"]
    acme_task = await start_task(api, tenant, agent, "for acme", user_group="acme")
    await start_task(api, tenant, agent, "for nobody")

    listed = (await api.get(tenant.url("/tasks"), headers=auth(tokens["acme"]))).json()
    assert [t["id"] for t in listed["items"]] == [acme_task]
    theirs = (await api.get(tenant.url("/tasks"), headers=auth(tokens["globex"]))).json()
    assert theirs == {"items": [], "next_cursor": None}
    assert_error(
        await api.get(tenant.url(f"/tasks/{acme_task}"), headers=auth(tokens["globex"])), 404
    )
    await task_in(api, tenant, acme_task, {"idle"})
    sent = await api.post(
        tenant.url(f"/tasks/{acme_task}/messages"),
        json={"message": "more"},
        headers=auth(tokens["acme"]),
    )
    assert sent.status_code == 202
    other = await api.post(
        tenant.url(f"/tasks/{acme_task}/messages"),
        json={"message": "x"},
        headers=auth(tokens["globex"]),
    )
    assert_error(other, 404)
    unknown_group = await api.post(
        tenant.url(f"/agents/{agent}/tasks"),
        json={"message": "x", "user_group": "nope"},
        headers=tenant.headers,
    )
    assert_error(unknown_group, 404)


# OpenAI over its wire protocol


@pytest.fixture
async def openai_api(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    openai_server: FakeOpenAI,
) -> AsyncIterator[httpx.AsyncClient]:
    openai_server.reset()
    configured = settings.model_copy(
        update={
            "openai_api_key": "sk-test-secret-key-123456",
            "openai_base_url": openai_server.base_url,
        }
    )
    async with (
        worker_on(temporal_env.client, configured, session_factory),
        api_client(configured, temporal_env.client) as client,
    ):
        yield client


async def test_a_task_on_an_openai_compatible_model_runs_the_whole_loop(
    openai_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    temporal_env: WorkflowEnvironment,
):
    openai_server.reply_chunks(
        chunk({"role": "assistant", "content": None}),
        tool_calls(tool_delta(index=0, id="call_1", name="echo_tool", arguments='{"te')),
        tool_calls(tool_delta(index=0, arguments='xt": "from gpt"}')),
        chunk({}, finish_reason="tool_calls"),
        usage_chunk(20, 5),
    )
    openai_server.reply_text("The tool said ", "hello.", prompt_tokens=30, completion_tokens=4)
    tool = await make_tool(openai_api, tenant)
    agent = await make_agent(openai_api, tenant, tools=[{"tool_id": tool}], model="openai:gpt-test")
    task_id = await start_task(openai_api, tenant, agent, "Use the tool")

    task = await task_in(openai_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert task["messages"][-1]["content"] == "The tool said hello."
    assert task["messages"][2]["content"] == "tool got from gpt"
    assert task["usage"] == {"input_tokens": 50, "output_tokens": 9}
    second = openai_server.requests[1].body
    assert second["tools"][0]["function"]["name"] == "echo_tool"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "tool got from gpt",
    }
    # The key reached the provider, and nowhere else.
    assert openai_server.requests[0].credential == "sk-test-secret-key-123456"
    history = await histories_of(temporal_env, [task["workflow_id"]])
    assert "tool got from gpt" in history  # the search sees decoded payloads
    assert "sk-test-secret-key-123456" not in history
    assert "sk-test-secret-key-123456" not in json.dumps(task)


async def test_a_task_whose_model_call_failed_ends_failed_in_temporal_too(
    openai_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    temporal_env: WorkflowEnvironment,
):
    openai_server.reply_error(400, "this model does not take that request")
    agent = await make_agent(openai_api, tenant, tools=[], model="openai:gpt-test")
    task_id = await start_task(openai_api, tenant, agent, "hello")

    task = await task_in(openai_api, tenant, task_id, FINAL)
    assert task["status"] == "failed"
    assert "this model does not take that request" in task["error"]
    handle = temporal_env.client.get_workflow_handle(task["workflow_id"])
    with pytest.raises(WorkflowFailureError) as raised:
        await handle.result()
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    assert isinstance(raised.value.cause, ApplicationError)
    assert raised.value.cause.message == task["error"]
    # Temporal's status filter finds it.
    failed = [
        run.id
        async for run in temporal_env.client.list_workflows(
            f"WorkflowId = '{task['workflow_id']}' AND ExecutionStatus = 'Failed'"
        )
    ]
    assert failed == [task["workflow_id"]]


async def test_a_retried_model_call_says_so_in_the_tasks_events(
    openai_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: async_sessionmaker[AsyncSession],
):
    for _ in range(2):
        openai_server.reply_error(503, "overloaded", headers={"retry-after": "0.2"})
    openai_server.reply_text("Back.")
    agent = await make_agent(openai_api, tenant, tools=[], model="openai:gpt-test")
    task_id = await start_task(openai_api, tenant, agent, "hello")

    task = await task_in(openai_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert task["messages"][-1]["content"] == "Back."
    async with session_factory() as session:
        events = await event_repo.list_events(session=session, task_id=task_id)
    retrying = [e.data for e in events if e.type == "llm.retrying"]
    assert [r["attempt"] for r in retrying] == [1, 2]
    assert all(r["retry_in_seconds"] == 0.2 for r in retrying)
    assert all("503" in r["error"] and "overloaded" in r["error"] for r in retrying)
    assert all(r["next_attempt_at"].endswith("Z") for r in retrying)


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """What the Temporal UI shows as the workflow's current details."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def test_while_a_model_call_is_retried_the_tasks_details_in_temporal_say_so(
    openai_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    temporal_env: WorkflowEnvironment,
):
    # Long enough a wait for the details to be read while it lasts.
    openai_server.reply_error(503, "overloaded", headers={"retry-after": "4"})
    openai_server.reply_text("Back.")
    agent = await make_agent(openai_api, tenant, tools=[], model="openai:gpt-test")
    task_id = await start_task(openai_api, tenant, agent, "hello")
    task = (await openai_api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
    handle = temporal_env.client.get_workflow_handle(task["workflow_id"])

    async with asyncio.timeout(30):
        while not (details := await current_details(handle)).startswith("model call failed"):
            await asyncio.sleep(0.1)
    assert details.startswith("model call failed (attempt 1): ")
    assert "503" in details and "overloaded" in details
    assert re.search(r"; retrying at \d\d:\d\d:\d\d UTC$", details), details

    task = await task_in(openai_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    # The call went through: the details say what the task does again, not the retry.
    assert await current_details(handle) == "completed"
    signals = [
        event.workflow_execution_signaled_event_attributes.signal_name
        async for event in handle.fetch_history_events()
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == ["llm_retrying"]


async def test_after_its_automatic_runs_a_tool_asks_for_approval(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "max_auto_runs": 1}])
    task_id = await start_task(
        api, tenant, agent, 'call echo_tool {"text": "first"}\ncall echo_tool {"text": "second"}'
    )
    waiting = await task_in(api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval"
    assert [p["arguments"] for p in waiting["pending_approvals"]] == [{"text": "second"}]


async def test_a_task_past_its_time_budget_times_out(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(
        api,
        tenant,
        tools=[{"tool_id": tool, "approval": "required"}],
        time_budget_seconds=2,
    )
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "x"}')
    task = await task_in(api, tenant, task_id, FINAL, timeout=30)
    assert task["status"] == "timed-out"
    assert "time budget" in task["error"]
    handle = temporal_env.client.get_workflow_handle(task["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()  # the record is written a moment before the run ends
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


# Anthropic over its wire protocol


async def test_a_task_on_an_anthropic_model_runs_the_whole_loop(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    anthropic_server: FakeAnthropic,
):
    anthropic_server.reset()
    anthropic_server.reply(
        "Let me check.",
        tool_uses=(ToolUse("toolu_1", "echo_tool", ('{"text": ', '"from claude"}')),),
        input_tokens=15,
        output_tokens=5,
    )
    anthropic_server.reply("Claude heard back.", input_tokens=25, output_tokens=3)
    configured = settings.model_copy(
        update={
            "anthropic_api_key": "sk-ant-test-key-987654",
            "anthropic_base_url": anthropic_server.base_url,
        }
    )
    async with (
        worker_on(temporal_env.client, configured, session_factory),
        api_client(configured, temporal_env.client) as api,
    ):
        tool = await make_tool(api, tenant)
        agent = await make_agent(
            api, tenant, tools=[{"tool_id": tool}], model="anthropic:claude-test"
        )
        task_id = await start_task(api, tenant, agent, "Use the tool")
        task = await task_in(api, tenant, task_id, FINAL)

    assert task["status"] == "completed", task["error"]
    assert [m["role"] for m in task["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert task["messages"][2]["content"] == "tool got from claude"
    assert task["messages"][-1]["content"] == "Claude heard back."
    assert task["usage"] == {"input_tokens": 40, "output_tokens": 8}
    second = anthropic_server.requests[1].body
    result_block = second["messages"][-1]["content"][0]
    assert (result_block["type"], result_block["tool_use_id"]) == ("tool_result", "toolu_1")
    assert "sk-ant-test-key-987654" not in json.dumps(task)


async def test_an_update_makes_a_new_agent_version_and_a_task_keeps_the_one_it_started_with(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await make_agent(api, tenant, tools=[], model="scripted:echo", idle_timeout_seconds=30)
    task_id = await start_task(api, tenant, agent, "hello")
    await task_in(api, tenant, task_id, {"idle"})

    tool = await make_tool(api, tenant)
    updated = await api.patch(
        tenant.url(f"/agents/{agent}"),
        json={"model": "scripted:tools", "tools": [{"tool_id": tool}]},
        headers=tenant.headers,
    )
    assert updated.json()["version"] == 2
    versions = (
        await api.get(tenant.url(f"/agents/{agent}/versions"), headers=tenant.headers)
    ).json()
    assert [(v["version"], v["spec"]["model"]) for v in versions["items"]] == [
        (1, "scripted:echo"),
        (2, "scripted:tools"),
    ]

    # The running task still talks to version 1: it echoes instead of calling the tool.
    await api.post(
        tenant.url(f"/tasks/{task_id}/messages"),
        json={"message": 'call echo_tool {"text": "x"}'},
        headers=tenant.headers,
    )
    async with asyncio.timeout(20):
        while True:
            task = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
            if len(task["messages"]) == 4:
                break
            await asyncio.sleep(0.1)
    assert task["agent_version"] == 1
    assert task["messages"][-1]["content"].endswith('You said: call echo_tool {"text": "x"}')
    fresh = await start_task(api, tenant, agent, 'call echo_tool {"text": "y"}')
    done = await task_in(api, tenant, fresh, {"idle"} | FINAL)
    assert done["agent_version"] == 2
    assert [m["content"] for m in done["messages"] if m["role"] == "tool"] == ["tool got y"]
