"""`POST .../integrations/{id}/test`: connects as the integration's calls will, with the
stored key, and says whether it answered (200 `{"ok": true, ...}`) or what failed (200
`{"ok": false, "error"}`), never showing the key. An LLM kind lists its models; an MCP server
is initialised and lists its tools.

The fake providers and the MCP server listen on 127.0.0.1, which the operator here allows by
host and port."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.fakes import mcp_server, refused_port
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.mcp_server import FakeMcp
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_TOKEN, SIGNING_SECRET, FakeSlack
from tests.support import Tenant, api_client, assert_error, auth, create_token

KEY = "sk-checked-key-3c4d5e6f"
DOWN = refused_port()  # nothing listens there


@pytest.fixture
def settings(
    settings: Settings,
    mcp: FakeMcp,
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    slack: FakeSlack,
) -> Settings:
    ports = (mcp.port, openai_server.port, anthropic_server.port, slack.port, DOWN)
    return settings.model_copy(
        update={
            "http_allow_hosts": [f"127.0.0.1:{port}" for port in ports],
            "mcp_stdio_enabled": True,
        }
    )


async def check(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], *, name: str = "it"
) -> dict[str, Any]:
    created = await api.post(
        tenant.url("/integrations"), json={"name": name, **body}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    response = await api.post(tenant.url(f"/integrations/{name}/test"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert KEY not in response.text and BOT_TOKEN not in response.text
    assert SIGNING_SECRET not in response.text
    result: dict[str, Any] = response.json()
    return result


async def test_an_mcp_server_over_http_answers_with_its_tools(
    api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp
):
    mcp.reset()
    mcp.required_key = KEY
    body = {"kind": "mcp", "transport": "http", "url": mcp.url, "api_key": KEY}
    result = await check(api, tenant, body)
    assert result == {
        "ok": True,
        "error": None,
        "models": [],
        "tools": ["get_current_time", "shout", "fail", "sleep", "environment_names"],
    }
    assert mcp.authorizations and set(mcp.authorizations) == {f"Bearer {KEY}"}


async def test_an_mcp_server_over_stdio_answers_with_its_tools(
    api: httpx.AsyncClient, tenant: Tenant
):
    body = {
        "kind": "mcp",
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(Path(mcp_server.__file__))],
    }
    result = await check(api, tenant, body)
    assert result["ok"] is True, result
    assert result["tools"] == ["get_current_time", "shout", "fail", "sleep", "environment_names"]


async def test_an_mcp_server_that_is_down_or_refuses_the_key_fails_the_check_saying_why(
    api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp
):
    down = f"http://127.0.0.1:{DOWN}/mcp"
    result = await check(api, tenant, {"kind": "mcp", "transport": "http", "url": down})
    assert result["ok"] is False
    assert f"could not reach MCP server 'it' ({down})" in result["error"]

    mcp.reset()
    mcp.required_key = "another key"
    body = {"kind": "mcp", "transport": "http", "url": mcp.url, "api_key": KEY}
    refused = await check(api, tenant, body, name="wrong_key")
    assert refused["ok"] is False
    assert "answered HTTP 401 (is its API key right?)" in refused["error"]


async def test_an_mcp_url_the_operator_no_longer_allows_is_not_called(
    api: httpx.AsyncClient,
    tenant: Tenant,
    mcp: FakeMcp,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
):
    created = await api.post(
        tenant.url("/integrations"),
        json={"name": "docs", "kind": "mcp", "transport": "http", "url": mcp.url},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    mcp.reset()
    strict = settings.model_copy(update={"http_allow_hosts": []})
    async with api_client(strict, temporal_env.client) as client:
        response = await client.post(tenant.url("/integrations/docs/test"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is False
    assert "was not called: 127.0.0.1 is a loopback address" in response.json()["error"]
    assert mcp.authorizations == []


async def test_llm_integrations_list_their_models_with_the_stored_key(
    api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
):
    openai_server.reset()
    anthropic_server.reset()
    gpt = await check(
        api, tenant, {"kind": "openai", "base_url": openai_server.base_url, "api_key": KEY}
    )
    assert gpt == {"ok": True, "error": None, "models": ["fake-model"], "tools": []}
    claude = await check(
        api,
        tenant,
        {"kind": "anthropic", "base_url": anthropic_server.base_url, "api_key": KEY},
        name="claude",
    )
    assert claude["ok"] is True and claude["models"] == ["claude-fake"]
    assert openai_server.model_listings == anthropic_server.model_listings == [KEY]


async def test_an_llm_endpoint_that_is_down_fails_the_check_saying_why(
    api: httpx.AsyncClient, tenant: Tenant
):
    body = {"kind": "openai", "base_url": f"http://127.0.0.1:{DOWN}/v1", "api_key": KEY}
    result = await check(api, tenant, body)
    assert result["ok"] is False
    assert f"the connection to openai at http://127.0.0.1:{DOWN}/v1 failed" in result["error"]


async def test_only_the_projects_members_may_test_its_integrations(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, mcp: FakeMcp
):
    created = await api.post(
        tenant.url("/integrations"),
        json={"name": "docs", "kind": "mcp", "transport": "http", "url": mcp.url},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    for ref in ("docs", created.json()["id"], "missing"):
        theirs = await api.post(
            tenant.url(f"/integrations/{ref}/test"), headers=other_tenant.headers
        )
        assert_error(theirs, 404, "not_found")
    viewer = await create_token(
        api, tenant.headers, name="viewer", project_id=tenant.project_id, role="viewer"
    )
    denied = await api.post(tenant.url("/integrations/docs/test"), headers=auth(viewer["token"]))
    assert_error(denied, 403)


async def test_a_slack_app_is_checked_with_auth_test_and_its_bot_token(
    api: httpx.AsyncClient, tenant: Tenant, slack: FakeSlack
):
    slack.reset()
    body = {
        "kind": "slack",
        "base_url": slack.base_url,
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
    }
    assert await check(api, tenant, body) == {"ok": True, "error": None, "models": [], "tools": []}
    assert slack.authorizations == [f"Bearer {BOT_TOKEN}"]


async def test_a_slack_app_whose_token_slack_refuses_fails_the_check_naming_slacks_error(
    api: httpx.AsyncClient, tenant: Tenant, slack: FakeSlack
):
    slack.reset()
    slack.token = "xoxb-another-token"
    body = {
        "kind": "slack",
        "base_url": slack.base_url,
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
    }
    result = await check(api, tenant, body)
    assert result["ok"] is False
    assert result["error"] == "Slack (it) refused auth.test: invalid_auth"

    down = {**body, "base_url": f"http://127.0.0.1:{DOWN}/api/"}
    unreachable = await check(api, tenant, down, name="down")
    assert unreachable["ok"] is False and f"127.0.0.1:{DOWN}" in unreachable["error"]
