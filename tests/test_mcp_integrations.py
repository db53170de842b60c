"""MCP servers as a project's integrations: over streamable HTTP (the key sent as a bearer
token, stored encrypted, never returned; the url through the egress guard) or over stdio (a
process on the worker: only when the operator allows it, with a command that exists).

The MCP server is tests/fakes/mcp_server.py, built with the `mcp` package: over HTTP on
127.0.0.1 (which the operator here allows by host and port), over stdio as a script run by
this Python."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.fakes import mcp_server, refused_port
from tests.fakes.mcp_server import FakeMcp
from tests.support import Tenant, api_client, assert_error

MCP_KEY = "mcp-key-5e6f7a8b9c"
STDIO_SERVER = {"command": sys.executable, "args": [str(Path(mcp_server.__file__))]}


@pytest.fixture
def settings(settings: Settings, mcp: FakeMcp) -> Settings:
    return settings.model_copy(
        update={"http_allow_hosts": [f"127.0.0.1:{mcp.port}"], "mcp_stdio_enabled": True}
    )


@pytest.fixture
def responses(api: httpx.AsyncClient) -> list[str]:
    """The body of every response the test's client receives."""
    seen: list[str] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        seen.append(response.text)

    api.event_hooks["response"].append(record)
    return seen


async def create(api: httpx.AsyncClient, tenant: Tenant, **body: Any) -> httpx.Response:
    return await api.post(tenant.url("/integrations"), json=body, headers=tenant.headers)


async def test_an_http_mcp_server_is_saved_with_its_key_hidden(
    api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp, responses: list[str]
):
    created = await create(
        api, tenant, name="docs", kind="mcp", transport="http", url=mcp.url, api_key=MCP_KEY
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["kind"], body["transport"], body["url"]) == ("mcp", "http", mcp.url)
    assert body["has_key"] is True and "api_key" not in body
    read = await api.get(tenant.url("/integrations/docs"), headers=tenant.headers)
    assert read.json() == body
    listed = await api.get(tenant.url("/integrations"), headers=tenant.headers)
    assert [i["name"] for i in listed.json()["items"]] == ["docs"]
    assert not any(MCP_KEY in text for text in responses)


async def test_a_stdio_server_is_saved_when_the_operator_allows_stdio(
    api: httpx.AsyncClient, tenant: Tenant
):
    created = await create(api, tenant, name="time", kind="mcp", transport="stdio", **STDIO_SERVER)
    assert created.status_code == 201, created.text
    assert (created.json()["command"], created.json()["args"]) == (
        STDIO_SERVER["command"],
        STDIO_SERVER["args"],
    )
    # A name on PATH is found too.
    by_name = await create(api, tenant, name="sh", kind="mcp", transport="stdio", command="sh")
    assert by_name.status_code == 201, by_name.text


async def test_stdio_is_refused_unless_the_operator_enables_it(
    settings: Settings, temporal_env: WorkflowEnvironment, tenant: Tenant
):
    off = settings.model_copy(update={"mcp_stdio_enabled": False})
    async with api_client(off, temporal_env.client) as client:
        response = await create(
            client, tenant, name="time", kind="mcp", transport="stdio", **STDIO_SERVER
        )
    error = assert_error(response, 422, "invalid_input")["error"]
    assert "BATON_MCP_STDIO_ENABLED=true" in error["message"]
    assert error["details"][0]["field"] == "transport"


@pytest.mark.parametrize("command", ["/no/such/mcp-server", "no-such-mcp-server-here"])
async def test_a_command_that_does_not_exist_is_refused_by_name(
    api: httpx.AsyncClient, tenant: Tenant, command: str
):
    response = await create(
        api, tenant, name="time", kind="mcp", transport="stdio", command=command
    )
    error = assert_error(response, 422, "invalid_input")["error"]
    assert repr(command) in error["message"]
    assert error["details"][0]["field"] == "command"


async def test_an_mcp_url_on_an_internal_address_is_refused_when_saved(
    api: httpx.AsyncClient, tenant: Tenant
):
    port = refused_port()  # not on the allow-list
    for url in (f"http://127.0.0.1:{port}/mcp", "http://169.254.169.254/mcp"):
        response = await create(api, tenant, name="inside", kind="mcp", transport="http", url=url)
        error = assert_error(response, 422, "blocked_destination")["error"]
        assert error["message"].startswith("url: ")
        assert "BATON_HTTP_ALLOW_HOSTS" in error["message"]
        assert error["details"][0]["field"] == "url"
    moved = await create(
        api, tenant, name="docs", kind="mcp", transport="http", url="https://a.b/m"
    )
    assert moved.status_code == 201, moved.text
    refused = await api.patch(
        tenant.url("/integrations/docs"),
        json={"url": f"http://127.0.0.1:{port}/mcp"},
        headers=tenant.headers,
    )
    assert_error(refused, 422, "blocked_destination")


async def test_moving_an_mcp_servers_url_needs_its_key_again(
    api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp
):
    created = await create(
        api, tenant, name="docs", kind="mcp", transport="http", url=mcp.url, api_key=MCP_KEY
    )
    assert created.status_code == 201, created.text
    url = tenant.url("/integrations/docs")
    moved = await api.patch(
        url, json={"url": "https://elsewhere.example/mcp"}, headers=tenant.headers
    )
    error = assert_error(moved, 422, "invalid_input")["error"]
    assert "re-enter the key" in error["message"]
    with_key = await api.patch(
        url,
        json={"url": "https://elsewhere.example/mcp", "api_key": "a key for elsewhere"},
        headers=tenant.headers,
    )
    assert with_key.status_code == 200, with_key.text
    assert with_key.json()["url"] == "https://elsewhere.example/mcp"


async def test_an_agent_cannot_take_an_mcp_integration_for_its_model(
    api: httpx.AsyncClient, tenant: Tenant, mcp: FakeMcp
):
    created = await create(api, tenant, name="docs", kind="mcp", transport="http", url=mcp.url)
    assert created.status_code == 201, created.text
    refused = await api.post(
        tenant.url("/agents"),
        json={"name": "a", "model": "openai:gpt-test", "integration": "docs"},
        headers=tenant.headers,
    )
    error = assert_error(refused, 422, "invalid_input")["error"]
    assert "(kind mcp) serves no models" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"transport": "http"},  # no url
        {"transport": "stdio"},  # no command
        {"transport": "http", "url": "https://a.b/mcp", "command": "sh"},
        {"transport": "stdio", "command": "sh", "url": "https://a.b/mcp"},
        {"transport": "http", "url": "https://a.b/mcp", "base_url": "https://a.b/v1"},
        {"transport": "stdio", "command": "sh", "api_key": "a key for nothing"},
        {"transport": "carrier-pigeon", "command": "sh"},
        {"url": "https://a.b/mcp"},  # no transport
    ],
)
async def test_a_malformed_mcp_integration_is_refused(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
):
    assert_error(await create(api, tenant, name="bad", kind="mcp", **body), 422)


async def test_an_llm_integration_takes_no_mcp_fields(api: httpx.AsyncClient, tenant: Tenant):
    for field in ({"command": "sh"}, {"transport": "http"}, {"url": "https://a.b/mcp"}):
        response = await create(api, tenant, name="gpt", kind="openai", **field)
        error = assert_error(response, 422)["error"]
        assert "not a field of openai integrations" in error["message"]


async def test_the_catalog_describes_mcp_integrations(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.get("/api/v1/integration-kinds", headers=tenant.headers)
    kinds = {item["kind"]: item for item in response.json()["items"]}
    info = kinds["mcp"]
    assert info["offers"] == ["steps", "tools"]
    assert info["secret_fields"] == ["api_key"]
    validator = Draft202012Validator(info["json_schema"])
    assert validator.is_valid(
        {"name": "docs", "kind": "mcp", "transport": "http", "url": "https://a.b/mcp"}
    )
    assert validator.is_valid({"name": "time", "kind": "mcp", "transport": "stdio", "command": "x"})
    assert not validator.is_valid({"name": "t", "kind": "mcp", "transport": "stdio"})
    assert not validator.is_valid(
        {"name": "t", "kind": "mcp", "transport": "http", "command": "x", "url": "https://a.b/"}
    )
