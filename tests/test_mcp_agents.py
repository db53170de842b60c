"""Agents with MCP tools: `"mcp": [{"integration", "tools", "approval"}]` offers the server's
tools to the model as `<integration>_<tool>`, with the server's description and input schema.
The list is read once when the task begins and kept in the task; each call is an activity
("mcp time.get_current_time") that follows the approval rules of other tools and appears in
the messages and events like them. A result the server marks `isError` is an error the model
reads; the task goes on.

The model is the offline `scripted:tools`, which calls the tools its message names; the MCP
server is tests/fakes/mcp_server.py over streamable HTTP on 127.0.0.1 (allowed here)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.settings import Settings
from tests.fakes import refused_port
from tests.fakes.mcp_server import FIXED_TIME, FakeMcp
from tests.support import Tenant, assert_error, decoded, histories_of
from tests.support.factories import FINAL, task_in

KEY = "mcp-agent-key-4d5e6f7a"
DOWN = refused_port()


@pytest.fixture
def settings(settings: Settings, mcp: FakeMcp) -> Settings:
    return settings.model_copy(
        update={"http_allow_hosts": [f"127.0.0.1:{mcp.port}", f"127.0.0.1:{DOWN}"]}
    )


async def setup(
    api: httpx.AsyncClient,
    tenant: Tenant,
    mcp: FakeMcp,
    *more: dict[str, Any],
    **attachment: Any,
) -> str:
    """The MCP server as the integration `time`, and an agent attaching it (`attachment`,
    then `more` attachments)."""
    mcp.reset()
    mcp.required_key = KEY
    created = await api.post(
        tenant.url("/integrations"),
        json={"name": "time", "kind": "mcp", "transport": "http", "url": mcp.url, "api_key": KEY},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    agent = await api.post(
        tenant.url("/agents"),
        json={
            "name": "Clock",
            "model": "scripted:tools",
            "mcp": [{"integration": "time", **attachment}, *more],
        },
        headers=tenant.headers,
    )
    assert agent.status_code == 201, agent.text
    agent_id: str = agent.json()["id"]
    return agent_id


async def start(api: httpx.AsyncClient, tenant: Tenant, agent_id: str, message: str) -> str:
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/tasks"), json={"message": message}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


async def summaries(temporal_env: WorkflowEnvironment, workflow_id: str) -> list[str]:
    history = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        (await decoded(temporal_env.client, e.user_metadata.summary)).data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_the_model_calls_an_mcp_tool_and_reads_its_result(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    mcp: FakeMcp,
    temporal_env: WorkflowEnvironment,
):
    agent = await setup(api, tenant, mcp, tools=["get_current_time", "fail"])
    task_id = await start(api, tenant, agent, 'call time_get_current_time {"timezone": "UTC"}')

    task = await task_in(api, tenant, task_id, FINAL | {"idle"})

    assert task["status"] in ("completed", "idle"), task["error"]
    [call] = task["messages"][1]["tool_calls"]
    assert (call["name"], call["arguments"]) == ("time_get_current_time", {"timezone": "UTC"})
    [result] = [m["content"] for m in task["messages"] if m["role"] == "tool"]
    assert json.loads(result) == {"timezone": "UTC", "datetime": FIXED_TIME, "is_dst": False}
    scheduled = await summaries(temporal_env, task["workflow_id"])
    assert scheduled.count('"list mcp tools"') == 1
    assert '"mcp time.get_current_time"' in scheduled
    history = await histories_of(temporal_env, [task["workflow_id"]])
    assert KEY not in history
    # What the model was offered: the listed tools, named <integration>_<tool>, with the
    # server's description and input schema.
    assert "The current time in a timezone" in history
    assert "time_shout" not in history
    events = await api.get(tenant.url(f"/tasks/{task_id}/events"), headers=tenant.headers)
    assert "tool.run.completed" in events.text and KEY not in events.text


async def test_an_is_error_result_is_told_to_the_model_and_the_task_goes_on(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, mcp: FakeMcp
):
    agent = await setup(api, tenant, mcp)
    task_id = await start(api, tenant, agent, 'call time_fail {"reason": "closed"}')
    task = await task_in(api, tenant, task_id, FINAL | {"idle"})
    assert task["status"] in ("completed", "idle"), task["error"]
    [result] = [m["content"] for m in task["messages"] if m["role"] == "tool"]
    assert result.startswith("Error: the tool time_fail failed:")
    assert "the server refused: closed" in result


async def test_an_mcp_tool_that_needs_approval_waits_for_it(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, mcp: FakeMcp
):
    # The same server twice: its clock runs at once, its shout only once approved.
    agent = await setup(
        api,
        tenant,
        mcp,
        {"integration": "time", "tools": ["shout"], "approval": "required"},
        tools=["get_current_time"],
    )
    task_id = await start(
        api,
        tenant,
        agent,
        'call time_get_current_time {"timezone": "UTC"}\ncall time_shout {"text": "careful"}',
    )
    waiting = await task_in(api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval", waiting["error"]
    [pending] = waiting["pending_approvals"]
    assert pending["tool"] == "time_shout"
    calls_before = len(mcp.authorizations)
    approved = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/{pending['call_id']}"),
        json={"approve": True},
        headers=tenant.headers,
    )
    assert approved.status_code == 200, approved.text
    task = await task_in(api, tenant, task_id, FINAL | {"idle"})
    results = [m["content"] for m in task["messages"] if m["role"] == "tool"]
    assert len(results) == 2 and "CAREFUL!" in results and FIXED_TIME in "".join(results)
    assert len(mcp.authorizations) > calls_before  # called only once approved


async def test_an_agent_must_attach_an_mcp_integration_of_its_project(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, mcp: FakeMcp
):
    await setup(api, tenant, mcp)
    for owner, integration in ((tenant, "nope"), (other_tenant, "time")):
        refused = await api.post(
            owner.url("/agents"),
            json={"name": "a", "mcp": [{"integration": integration}]},
            headers=owner.headers,
        )
        error = assert_error(refused, 422, "invalid_input")["error"]
        assert error["details"][0]["field"] == "mcp[0].integration"
    in_use = await api.delete(tenant.url("/integrations/time"), headers=tenant.headers)
    assert assert_error(in_use, 409)["error"]["details"]["used_by"] == ["agent 'Clock'"]


async def test_a_server_that_is_down_offers_no_tools_and_the_task_goes_on(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    created = await api.post(
        tenant.url("/integrations"),
        json={
            "name": "gone",
            "kind": "mcp",
            "transport": "http",
            "url": f"http://127.0.0.1:{DOWN}/mcp",
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    agent = await api.post(
        tenant.url("/agents"),
        json={"name": "Lost", "model": "scripted:tools", "mcp": [{"integration": "gone"}]},
        headers=tenant.headers,
    )
    assert agent.status_code == 201, agent.text
    task_id = await start(api, tenant, agent.json()["id"], "call gone_anything {}")
    task = await task_in(api, tenant, task_id, FINAL | {"idle"})
    assert task["status"] in ("completed", "idle"), task["error"]
    # No tool was offered, so the scripted model answers without calling one.
    assert [m["role"] for m in task["messages"]] == ["user", "assistant"]
    assert "You said: call gone_anything {}" in task["messages"][-1]["content"]
