"""Baton as an MCP server: a real MCP client (the `mcp` package's streamable HTTP client) lists
and calls a project's tools and agents at `/mcp` of a real HTTP server, over the real database,
Temporal server and worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.tool_name_validation import TOOL_NAME_REGEX
from temporalio.worker import Worker

from baton.domain.models import SCRIPTED_LABEL
from baton.settings import Settings
from tests.support import Tenant, assert_error, auth, create_token

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
# A call may wait for its run or its answer (briefly here: the tests' runs are quick).
MCP_TIMEOUT = httpx2.Timeout(30.0)
# A status answer has no latency target here; a loaded CI machine has answered past 5 s.
HTTP_TIMEOUT = httpx.Timeout(30.0)
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@asynccontextmanager
async def mcp_client(
    base_url: str, authorization: str, query: str = ""
) -> AsyncIterator[ClientSession]:
    """An initialised MCP client session on `/mcp`, sending `Authorization: <authorization>`."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": authorization}, timeout=MCP_TIMEOUT) as http,
        streamable_http_client(f"{base_url}/mcp{query}", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def project_token(api: httpx.AsyncClient, tenant: Tenant, role: str = "editor") -> str:
    created = await create_token(api, tenant.headers, role=role, project_id=tenant.project_id)
    token: str = created["token"]
    return token


async def make_tool(api: httpx.AsyncClient, tenant: Tenant, **spec: Any) -> str:
    body = {
        "name": "Echo tool",
        "description": "Repeats its text",
        "params": [
            {"name": "text", "type": "text", "description": "What to repeat"},
            {"name": "times", "type": "integer", "required": False, "default": 1},
        ],
        "steps": [{"name": "say", "type": "template", "template": "tool got {{ params.text }}"}],
        **spec,
    }
    response = await api.post(tenant.url("/tools"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    tool_id: str = response.json()["id"]
    return tool_id


async def make_agent(api: httpx.AsyncClient, tenant: Tenant, **spec: Any) -> str:
    body = {"name": "Support bot", "model": "scripted:echo", **spec}
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


def by_name(listed: types.ListToolsResult) -> dict[str, types.Tool]:
    return {tool.name: tool for tool in listed.tools}


def text_of(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_a_project_token_lists_its_tools_with_their_params_and_its_agents_as_ask_tools(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str
):
    await make_tool(api, tenant)
    # Its step names a secret and an internal URL: neither is any caller's business.
    await make_tool(
        api,
        tenant,
        name="Fetch orders",
        description="",
        params=[],
        steps=[
            {
                "name": "fetch",
                "type": "http",
                "url": "https://orders.internal.example/v1",
                "headers": {"X-Key": "{{ secrets.orders_key }}"},
            }
        ],
    )
    await make_agent(
        api,
        tenant,
        description="Answers customers",
        params=[{"name": "customer", "type": "text"}],
    )
    token = await project_token(api, tenant)

    async with mcp_client(live_api, f"Bearer {token}") as session:
        tools = by_name(await session.list_tools())

    assert set(tools) == {
        "echo_tool",
        "fetch_orders",
        "ask_support_bot",
        "get_task",
        "get_tool_run",
    }
    assert all(TOOL_NAME_REGEX.match(name) for name in tools)
    echo = tools["echo_tool"]
    assert echo.description == "Repeats its text"
    assert echo.input_schema == {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "What to repeat"},
            "times": {"type": "integer", "default": 1},
        },
        "required": ["text"],
        "additionalProperties": False,
    }
    ask = tools["ask_support_bot"]
    assert ask.description is not None and ask.description.startswith("Answers customers")
    assert ask.input_schema["required"] == ["message", "params"]
    assert ask.input_schema["properties"]["params"]["properties"] == {
        "customer": {"type": "string"}
    }
    listed = json.dumps([tool.model_dump(mode="json") for tool in tools.values()])
    assert "orders_key" not in listed and "orders.internal.example" not in listed


async def test_calling_a_tool_is_a_tool_run_and_answers_with_its_output(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str, worker: Worker
):
    tool_id = await make_tool(api, tenant)
    token = await project_token(api, tenant)

    async with mcp_client(live_api, f"Bearer {token}") as session:
        result = await session.call_tool("echo_tool", {"text": "hi"})

    assert not result.is_error, text_of(result)
    assert text_of(result) == "tool got hi"
    assert result.structured_content == {"result": "tool got hi"}
    # A run like any other: in the project's tool runs, with its params.
    runs = (await api.get(tenant.url("/tool-runs"), headers=tenant.headers)).json()["items"]
    assert [(r["tool_id"], r["status"], r["params"]) for r in runs] == [
        (tool_id, "succeeded", {"text": "hi", "times": 1})
    ]


async def test_a_failed_run_and_bad_arguments_are_error_results_with_the_reason(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str, worker: Worker
):
    await make_tool(api, tenant)
    # Loopback is refused by the egress guard: the run fails, it does not hang.
    await make_tool(
        api,
        tenant,
        name="Fetch local",
        params=[],
        steps=[{"name": "fetch", "type": "http", "url": "http://127.0.0.1:9/nothing"}],
    )
    token = await project_token(api, tenant)

    async with mcp_client(live_api, f"Bearer {token}") as session:
        failed = await session.call_tool("fetch_local", {})
        missing = await session.call_tool("echo_tool", {})
        unknown = await session.call_tool("no_such_tool", {})

    assert failed.is_error
    assert text_of(failed).startswith("the tool run failed: ")
    assert "127.0.0.1" in text_of(failed)
    assert failed.structured_content is not None
    assert failed.structured_content["status"] == "failed"
    assert missing.is_error and "'text'" in text_of(missing) and "required" in text_of(missing)
    assert unknown.is_error and "no_such_tool" in text_of(unknown)


async def test_ask_agent_starts_a_task_and_answers_with_the_agents_reply(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str, worker: Worker
):
    await make_agent(api, tenant)
    token = await project_token(api, tenant)

    async with mcp_client(live_api, f"Bearer {token}") as session:
        result = await session.call_tool("ask_support_bot", {"message": "where is my order?"})

    assert not result.is_error, text_of(result)
    assert text_of(result).startswith(SCRIPTED_LABEL)
    assert text_of(result).endswith("You said: where is my order?")
    assert result.structured_content is not None
    task_id = result.structured_content["task_id"]
    assert result.structured_content["answer"] == text_of(result)
    task = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
    assert task["status"] == "completed"
    assert [m["content"] for m in task["messages"]] == ["where is my order?", text_of(result)]


async def test_past_the_wait_ask_answers_with_the_task_id_and_get_task_gives_the_answer(
    api: httpx.AsyncClient, tenant: Tenant, settings: Settings, live_api: str, worker: Worker
):
    await make_agent(api, tenant)
    token = await project_token(api, tenant)
    settings.mcp_wait_seconds = 0  # the live server's settings: no call waits at all

    async with mcp_client(live_api, f"Bearer {token}") as session:
        started = await session.call_tool("ask_support_bot", {"message": "take your time"})
        assert not started.is_error, text_of(started)
        assert started.structured_content is not None
        assert started.structured_content["status"] in {"queued", "running"}
        task_id = started.structured_content["task_id"]
        assert task_id in text_of(started) and "get_task" in text_of(started)

        async with asyncio.timeout(30):
            while True:
                polled = await session.call_tool("get_task", {"task_id": task_id})
                assert not polled.is_error, text_of(polled)
                assert polled.structured_content is not None
                if "answer" in polled.structured_content:
                    break
                await asyncio.sleep(0.1)

    assert text_of(polled).endswith("You said: take your time")
    assert polled.structured_content["status"] == "completed"


async def test_a_viewer_token_lists_the_tools_but_cannot_call_them(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str, worker: Worker
):
    await make_tool(api, tenant)
    await make_agent(api, tenant)
    viewer = await project_token(api, tenant, role="viewer")

    async with mcp_client(live_api, f"Bearer {viewer}") as session:
        tools = by_name(await session.list_tools())
        ran = await session.call_tool("echo_tool", {"text": "hi"})
        asked = await session.call_tool("ask_support_bot", {"message": "hello"})
        polled = await session.call_tool("get_task", {"task_id": "no-such-task"})

    assert {"echo_tool", "ask_support_bot"} <= set(tools)
    for refused in (ran, asked):
        assert refused.is_error
        assert text_of(refused) == "this needs the editor role; the token has viewer"
    # Polling only reads: a viewer may.
    assert polled.is_error and text_of(polled) == "task no-such-task not found"
    runs = (await api.get(tenant.url("/tool-runs"), headers=tenant.headers)).json()["items"]
    tasks = (await api.get(tenant.url("/tasks"), headers=tenant.headers)).json()["items"]
    assert runs == [] and tasks == []


async def test_a_user_group_token_is_refused(api: httpx.AsyncClient, tenant: Tenant, live_api: str):
    await make_tool(api, tenant)
    created = await api.post(
        "/api/user",
        json={"current_token": "", "name": "Acme", "provided_id": "acme"},
        headers=tenant.headers,
    )
    assert created.status_code == 200, created.text
    group_token = created.json()["user_group"]["token"]

    async with httpx.AsyncClient(base_url=live_api, timeout=HTTP_TIMEOUT) as http:
        response = await http.post(
            "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **auth(group_token)}
        )
    body = assert_error(response, 403, "permission_denied")
    assert "user group" in body["error"]["message"]


async def test_without_a_valid_token_mcp_answers_401(live_api: str):
    async with httpx.AsyncClient(base_url=live_api, timeout=HTTP_TIMEOUT) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
            response = await http.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})
            assert_error(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"] == "Token"


async def test_an_organisation_token_names_its_project_and_the_token_scheme_works(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str
):
    await make_tool(api, tenant)

    async with mcp_client(
        live_api, f"Token {tenant.token}", f"?project_id={tenant.project_id}"
    ) as session:
        assert "echo_tool" in by_name(await session.list_tools())

    async with httpx.AsyncClient(base_url=live_api, timeout=HTTP_TIMEOUT) as http:
        response = await http.post(
            "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **tenant.headers}
        )
    assert "project_id" in assert_error(response, 422)["error"]["message"]


async def test_a_token_reaches_only_its_own_project(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, live_api: str, worker: Worker
):
    await make_tool(api, tenant, name="Mine")
    await make_tool(api, other_tenant, name="Theirs")
    await make_agent(api, other_tenant, name="Their bot")
    theirs = await project_token(api, other_tenant)
    async with mcp_client(live_api, f"Bearer {theirs}") as session:
        their_run = await session.call_tool("theirs", {"text": "private"})
        their_task = await session.call_tool("ask_their_bot", {"message": "private"})
    assert not their_run.is_error and not their_task.is_error
    assert their_task.structured_content is not None
    runs = (await api.get(other_tenant.url("/tool-runs"), headers=other_tenant.headers)).json()
    [their_run_id] = [run["id"] for run in runs["items"]]

    their_task_id = their_task.structured_content["task_id"]

    await make_agent(api, tenant, name="My bot")
    mine = await project_token(api, tenant)
    async with mcp_client(live_api, f"Bearer {mine}") as session:
        names = set(by_name(await session.list_tools()))
        run = await session.call_tool("get_tool_run", {"run_id": their_run_id})
        task = await session.call_tool("get_task", {"task_id": their_task_id})
        ask = await session.call_tool("ask_their_bot", {"message": "hello"})
    assert names == {"mine", "ask_my_bot", "get_tool_run", "get_task"}
    assert run.is_error and text_of(run) == f"tool run {their_run_id} not found"
    assert task.is_error and text_of(task) == f"task {their_task_id} not found"
    assert ask.is_error and "ask_their_bot" in text_of(ask)

    # Naming the other project in the URL finds nothing either.
    async with httpx.AsyncClient(base_url=live_api, timeout=HTTP_TIMEOUT) as http:
        response = await http.post(
            f"/mcp?project_id={other_tenant.project_id}",
            json=INITIALIZE,
            headers={**MCP_HEADERS, **auth(mine)},
        )
    assert_error(response, 404, "not_found")
    # And the org token of one tenant cannot name the other's project.
    async with httpx.AsyncClient(base_url=live_api, timeout=HTTP_TIMEOUT) as http:
        response = await http.post(
            f"/mcp?project_id={other_tenant.project_id}",
            json=INITIALIZE,
            headers={**MCP_HEADERS, **tenant.headers},
        )
    assert_error(response, 404, "not_found")


async def test_tools_whose_names_slug_alike_get_distinct_names(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str
):
    await make_tool(api, tenant, name="Echo")
    await make_tool(api, tenant, name="echo")
    token = await project_token(api, tenant)
    async with mcp_client(live_api, f"Bearer {token}") as session:
        tools = by_name(await session.list_tools())
    assert set(tools) == {"echo", "echo_2", "get_tool_run"}
    assert (tools["echo"].title, tools["echo_2"].title) == ("Echo", "echo")


async def test_an_object_output_is_the_structured_content_as_it_is(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str, worker: Worker
):
    await make_tool(
        api,
        tenant,
        name="Shape",
        steps=[
            {
                "name": "shape",
                "type": "transform",
                "input": "{{ params }}",
                "expression": "{text: text, times: times}",
            }
        ],
    )
    token = await project_token(api, tenant)
    async with mcp_client(live_api, f"Bearer {token}") as session:
        result = await session.call_tool("shape", {"text": "hi", "times": 3})
    assert not result.is_error, text_of(result)
    assert result.structured_content == {"text": "hi", "times": 3}
    assert json.loads(text_of(result)) == {"text": "hi", "times": 3}


async def test_past_the_wait_a_tool_call_answers_with_the_run_id_and_get_tool_run_the_output(
    api: httpx.AsyncClient, tenant: Tenant, settings: Settings, live_api: str, worker: Worker
):
    await make_tool(
        api,
        tenant,
        name="Slow echo",
        steps=[
            {"name": "pause", "type": "delay", "seconds": 1},
            {"name": "say", "type": "template", "template": "late {{ params.text }}"},
        ],
    )
    token = await project_token(api, tenant)
    settings.mcp_wait_seconds = 0.1  # the live server's settings

    async with mcp_client(live_api, f"Bearer {token}") as session:
        started = await session.call_tool("slow_echo", {"text": "hi"})
        assert not started.is_error, text_of(started)
        assert started.structured_content is not None
        assert started.structured_content["status"] in {"queued", "running"}
        run_id = started.structured_content["run_id"]
        assert run_id in text_of(started) and "get_tool_run" in text_of(started)

        async with asyncio.timeout(30):
            while True:
                polled = await session.call_tool("get_tool_run", {"run_id": run_id})
                assert not polled.is_error, text_of(polled)
                if polled.structured_content == {"result": "late hi"}:
                    break
                await asyncio.sleep(0.1)
    assert text_of(polled) == "late hi"


async def test_ask_checks_the_agents_params_and_a_failed_task_is_an_error_result(
    api: httpx.AsyncClient, tenant: Tenant, live_api: str, worker: Worker
):
    await make_agent(api, tenant, params=[{"name": "customer", "type": "text"}])
    # No key for this provider anywhere: the task fails at its first model call.
    await make_agent(api, tenant, name="Keyless", model="openai:gpt-4o-mini")
    token = await project_token(api, tenant)

    async with mcp_client(live_api, f"Bearer {token}") as session:
        unnamed = await session.call_tool("ask_support_bot", {"message": "hello"})
        named = await session.call_tool(
            "ask_support_bot", {"message": "hello", "params": {"customer": "Ada"}}
        )
        failed = await session.call_tool("ask_keyless", {"message": "hello"})

    assert unnamed.is_error and "customer" in text_of(unnamed), text_of(unnamed)
    assert not named.is_error and text_of(named).endswith("You said: hello")
    assert failed.is_error, text_of(failed)
    assert text_of(failed).startswith("the task ended failed: ")
    assert failed.structured_content is not None
    assert failed.structured_content["status"] == "failed"
