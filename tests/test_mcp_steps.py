"""The `mcp` step: a tool calls a tool of the project's MCP server. Its output is the result's
structured content, else its text; a result the server marks `isError` fails the step with
the server's text, and a server that cannot be reached fails it naming the cause, within
the step's retries, never a stuck run. The key reaches the server as a bearer token and
nothing else: not the run, not its history.

The server is tests/fakes/mcp_server.py (the `mcp` package's MCPServer) over streamable HTTP
on 127.0.0.1, which the operator here allows by host and port, and over stdio."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.settings import Settings
from tests.fakes import mcp_server, refused_port
from tests.fakes.mcp_server import FIXED_TIME, FakeMcp
from tests.support import Tenant, assert_error, decoded, histories_of, worker_on

KEY = "mcp-step-key-0a1b2c3d"
DOWN = refused_port()


@pytest.fixture
def settings(settings: Settings, mcp: FakeMcp) -> Settings:
    return settings.model_copy(
        update={
            "http_allow_hosts": [f"127.0.0.1:{mcp.port}", f"127.0.0.1:{DOWN}"],
            "mcp_stdio_enabled": True,
        }
    )


async def integrate(api: httpx.AsyncClient, tenant: Tenant, name: str, **body: Any) -> None:
    response = await api.post(
        tenant.url("/integrations"),
        json={"name": name, "kind": "mcp", **body},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text


async def http_server(api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp) -> None:
    mcp.reset()
    mcp.required_key = KEY
    await integrate(api, tenant, "time", transport="http", url=mcp.url, api_key=KEY)


async def run_step(
    api: httpx.AsyncClient,
    tenant: Tenant,
    step: dict[str, Any],
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Saves a tool of one mcp step (with a `tz` param) and runs it to its end."""
    saved = await api.post(
        tenant.url("/tools"),
        json={
            "name": f"Calls {step['tool']}",
            "params": [{"name": "tz", "required": False}],
            "steps": [{"name": "call", "type": "mcp", **step}],
        },
        headers=tenant.headers,
    )
    assert saved.status_code == 201, saved.text
    started = await api.post(
        tenant.url(f"/tools/{saved.json()['id']}/runs"),
        json={"params": params or {}},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    async with asyncio.timeout(60):
        while True:
            body: dict[str, Any] = (
                await api.get(
                    tenant.url(f"/tool-runs/{started.json()['id']}"), headers=tenant.headers
                )
            ).json()
            if body["status"] in ("succeeded", "failed", "cancelled"):
                return body
            await asyncio.sleep(0.1)


async def test_a_step_returns_the_tools_structured_content(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    mcp: FakeMcp,
    temporal_env: WorkflowEnvironment,
):
    await http_server(api, tenant, mcp)
    step = {
        "integration": "time",
        "tool": "get_current_time",
        "arguments": {"timezone": "{{ params.tz }}"},
    }

    body = await run_step(api, tenant, step, {"tz": "Europe/Paris"})

    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == {"timezone": "Europe/Paris", "datetime": FIXED_TIME, "is_dst": False}
    assert set(mcp.authorizations) == {f"Bearer {KEY}"}
    history = await histories_of(temporal_env, [body["workflow_id"]])
    assert KEY not in history and KEY not in str(body)
    events = (
        await temporal_env.client.get_workflow_handle(body["workflow_id"]).fetch_history()
    ).events
    summaries = [
        (await decoded(temporal_env.client, e.user_metadata.summary)).data.decode()
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert '"step call: mcp time.get_current_time"' in summaries


async def test_a_step_returns_the_text_of_a_tool_without_structured_content(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, mcp: FakeMcp
):
    await http_server(api, tenant, mcp)
    body = await run_step(
        api, tenant, {"integration": "time", "tool": "shout", "arguments": {"text": "hello"}}
    )
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == "HELLO!"


async def test_a_stdio_server_answers_a_step_too_and_sees_none_of_the_workers_settings(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BATON_SECRET_KEY_FOR_THIS_TEST", "not for the server")
    await integrate(
        api,
        tenant,
        "local",
        transport="stdio",
        command=sys.executable,
        args=[str(Path(mcp_server.__file__))],
    )
    body = await run_step(
        api, tenant, {"integration": "local", "tool": "shout", "arguments": {"text": "quiet"}}
    )
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == "QUIET!"
    names = await run_step(api, tenant, {"integration": "local", "tool": "environment_names"})
    assert names["status"] == "succeeded", names["error"]
    assert "PATH" in names["output"]["result"]
    assert not [name for name in names["output"]["result"] if name.startswith("BATON_")]


async def test_a_stdio_server_is_refused_once_the_operator_no_longer_allows_stdio(
    api: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    await integrate(
        api,
        tenant,
        "local",
        transport="stdio",
        command=sys.executable,
        args=[str(Path(mcp_server.__file__))],
    )
    off = settings.model_copy(update={"mcp_stdio_enabled": False})
    async with worker_on(temporal_env.client, off, session_factory):
        body = await run_step(api, tenant, {"integration": "local", "tool": "shout"})
    assert body["status"] == "failed"
    assert "runs over stdio, which this server does not allow" in body["error"]
    assert "BATON_MCP_STDIO_ENABLED=true" in body["error"]


async def test_an_is_error_result_fails_the_step_with_the_servers_text_and_no_retry(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, mcp: FakeMcp
):
    await http_server(api, tenant, mcp)
    body = await run_step(
        api, tenant, {"integration": "time", "tool": "fail", "arguments": {"reason": "closed"}}
    )
    assert body["status"] == "failed"
    assert "time.fail failed:" in body["error"]
    assert "the server refused: closed" in body["error"]
    # One session (a discovery and the call), not the three attempts the step's retries allow.
    assert len(mcp.authorizations) <= 3


async def test_a_server_that_cannot_be_reached_fails_the_step_naming_the_cause(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    down = f"http://127.0.0.1:{DOWN}/mcp"
    await integrate(api, tenant, "gone", transport="http", url=down)
    started = time.monotonic()
    body = await run_step(
        api, tenant, {"integration": "gone", "tool": "get_current_time", "timeout_seconds": 5}
    )
    assert body["status"] == "failed"
    assert f"could not reach MCP server 'gone' ({down})" in body["error"]
    assert time.monotonic() - started < 30  # its retries, not a stuck run


async def test_a_server_that_does_not_answer_fails_the_step_within_its_timeout(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, mcp: FakeMcp
):
    await http_server(api, tenant, mcp)
    started = time.monotonic()
    body = await run_step(
        api,
        tenant,
        {
            "integration": "time",
            "tool": "sleep",
            "arguments": {"seconds": 6},
            "timeout_seconds": 2,
            "retries": 0,
        },
    )
    assert body["status"] == "failed"
    assert f"MCP server 'time' ({mcp.url}) did not answer within 1.8s" in body["error"]
    assert time.monotonic() - started < 15


async def test_a_step_must_name_an_mcp_integration_of_the_project(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, mcp: FakeMcp
):
    await http_server(api, tenant, mcp)
    openai = await api.post(
        tenant.url("/integrations"), json={"name": "gpt", "kind": "openai"}, headers=tenant.headers
    )
    assert openai.status_code == 201, openai.text
    step = {"name": "call", "type": "mcp", "tool": "shout"}
    for owner, integration, reason in (
        (tenant, "nope", "no integration 'nope' in this project"),
        (tenant, "gpt", "(kind openai) is not an MCP server"),
        (other_tenant, "time", "no integration 'time' in this project"),  # another project's
    ):
        refused = await api.post(
            owner.url("/tools"),
            json={"name": "t", "steps": [{**step, "integration": integration}]},
            headers=owner.headers,
        )
        error = assert_error(refused, 422, "invalid_input")["error"]
        assert reason in error["message"]
        assert error["details"][0]["field"] == "steps[0].integration"


async def test_an_mcp_integration_a_tool_uses_cannot_be_deleted(
    api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp
):
    await http_server(api, tenant, mcp)
    saved = await api.post(
        tenant.url("/tools"),
        json={
            "name": "Clock",
            "steps": [{"name": "now", "type": "mcp", "integration": "time", "tool": "shout"}],
        },
        headers=tenant.headers,
    )
    assert saved.status_code == 201, saved.text
    refused = await api.delete(tenant.url("/integrations/time"), headers=tenant.headers)
    body = assert_error(refused, 409, "conflict")
    assert body["error"]["details"]["used_by"] == ["tool 'Clock'"]


async def test_the_mcp_tool_template_clones_and_asks_the_projects_time_server(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, mcp: FakeMcp
):
    await http_server(api, tenant, mcp)
    cloned = await api.post(
        tenant.url("/tool-templates/current-time-from-mcp/clone"), headers=tenant.headers
    )
    assert cloned.status_code == 201, cloned.text
    started = await api.post(
        tenant.url(f"/tools/{cloned.json()['id']}/runs"),
        json={"params": {"timezone": "Asia/Tokyo"}, "wait": True},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == {"timezone": "Asia/Tokyo", "datetime": FIXED_TIME, "is_dst": False}
