"""Project-level LLM integrations: a project reaches OpenAI-compatible and Anthropic endpoints
with its own key, which is stored encrypted and never leaves the activity that uses it: not
in a response, an event, or the history of a task or of its tool runs. A base URL reaches
only what an http step may (the egress guard, when saved and at every call), and the key is
never sent to an address it was not entered for.

The fake providers listen on 127.0.0.1: the operator here allows each by its host and port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import integrations as integration_repo
from baton.db.tables import Integration, TaskEvent
from baton.domain.integrations import IntegrationSpec
from baton.domain.tool_runs import tool_run_workflow_id
from baton.security import SecretBox
from baton.settings import Settings
from tests.fakes import refused_port
from tests.fakes.anthropic_server import FakeAnthropic, ToolUse
from tests.fakes.openai_server import FakeOpenAI, chunk, tool_calls, tool_delta, usage_chunk
from tests.support import Tenant, api_client, assert_error, histories_of, worker_on

OPENAI_KEY = "sk-project-key-openai-1f2e3d"
ANTHROPIC_KEY = "sk-ant-project-key-9a8b7c"
FINAL = {"completed", "failed", "cancelled", "timed-out"}


@pytest.fixture(scope="module")
def attacker_server() -> Iterator[FakeOpenAI]:
    """A server of a project admin's own, which the operator happens to allow too."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    settings: Settings,
    openai_server: FakeOpenAI,
    anthropic_server: FakeAnthropic,
    attacker_server: FakeOpenAI,
) -> Settings:
    servers = (openai_server, anthropic_server, attacker_server)
    return settings.model_copy(
        update={"http_allow_hosts": [f"127.0.0.1:{server.port}" for server in servers]}
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


async def create_integration(api: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await api.post(tenant.url("/integrations"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_tool(api: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await api.post(
        tenant.url("/tools"),
        json={
            "name": "Echo tool",
            "params": [{"name": "text", "type": "text"}],
            "steps": [
                {"name": "say", "type": "template", "template": "tool got {{ params.text }}"}
            ],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    tool_id: str = response.json()["id"]
    return tool_id


async def make_agent(api: httpx.AsyncClient, tenant: Tenant, **spec: Any) -> str:
    body = {"name": "Helper", "model": "scripted:echo", **spec}
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def run_task(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, message: str
) -> dict[str, Any]:
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/tasks"), json={"message": message}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    async with asyncio.timeout(30):
        while True:
            task: dict[str, Any] = (
                await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
            ).json()
            if task["status"] in FINAL:
                return task
            await asyncio.sleep(0.1)


async def events_of(
    session_factory: async_sessionmaker[AsyncSession], task_id: str
) -> list[TaskEvent]:
    async with session_factory() as session:
        rows = await session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id))
        return list(rows.all())


# The API


async def test_an_integration_is_created_read_updated_and_deleted_without_its_key(
    api: httpx.AsyncClient,
    tenant: Tenant,
    responses: list[str],
    session_factory: async_sessionmaker[AsyncSession],
):
    created = await create_integration(
        api,
        tenant,
        name="main",
        kind="openai",
        base_url="http://llm.internal:8080/v1",
        api_key=OPENAI_KEY,
    )
    assert created["has_key"] is True
    assert created["base_url"] == "http://llm.internal:8080/v1"
    assert "api_key" not in created

    by_name = await api.get(tenant.url("/integrations/main"), headers=tenant.headers)
    by_id = await api.get(tenant.url(f"/integrations/{created['id']}"), headers=tenant.headers)
    assert by_name.json() == by_id.json() == created
    listed = await api.get(tenant.url("/integrations"), headers=tenant.headers)
    assert [i["name"] for i in listed.json()["items"]] == ["main"]

    patched = await api.patch(
        tenant.url("/integrations/main"),
        json={"name": "primary", "default": True, "api_key": OPENAI_KEY + "-rotated"},
        headers=tenant.headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["default"]) == ("primary", True)
    assert patched.json()["base_url"] == "http://llm.internal:8080/v1"

    # At rest the key is ciphertext; in every response it is absent.
    async with session_factory() as session:
        query = select(Integration).where(Integration.project_id == tenant.project_id)
        row = (await session.scalars(query)).one()
        assert row.key_ciphertext and OPENAI_KEY not in row.key_ciphertext
    assert not any(OPENAI_KEY in body for body in responses)

    deleted = await api.delete(tenant.url("/integrations/primary"), headers=tenant.headers)
    assert deleted.status_code == 204
    gone = await api.get(tenant.url("/integrations/primary"), headers=tenant.headers)
    assert_error(gone, 404, "not_found")


async def test_bad_integrations_are_refused_clearly(api: httpx.AsyncClient, tenant: Tenant):
    await create_integration(api, tenant, name="main", kind="openai", api_key=OPENAI_KEY)
    again = await api.post(
        tenant.url("/integrations"), json={"name": "main", "kind": "openai"}, headers=tenant.headers
    )
    assert_error(again, 409, "conflict")
    for body in (
        {"name": "x", "kind": "gemini"},
        {"name": "not a name", "kind": "openai"},
        {"name": "x", "kind": "openai", "base_url": "not a url"},
        {"name": "x", "kind": "openai", "api_key": ""},
    ):
        response = await api.post(tenant.url("/integrations"), json=body, headers=tenant.headers)
        assert_error(response, 422)


async def test_another_tenant_sees_none_of_a_projects_integrations(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    created = await create_integration(api, tenant, name="main", kind="openai")
    theirs = other_tenant.headers
    for path in ("/integrations/main", f"/integrations/{created['id']}"):
        assert_error(await api.get(tenant.url(path), headers=theirs), 404, "not_found")
        assert_error(
            await api.patch(tenant.url(path), json={"default": True}, headers=theirs),
            404,
            "not_found",
        )
        assert_error(await api.delete(tenant.url(path), headers=theirs), 404, "not_found")
    # Nor can another project's agent name it.
    refused = await api.post(
        other_tenant.url("/agents"),
        json={"name": "a", "model": "openai:gpt-test", "integration": "main"},
        headers=theirs,
    )
    assert_error(refused, 422, "invalid_input")


async def test_agents_and_llm_steps_must_name_an_integration_of_their_models_provider(
    api: httpx.AsyncClient, tenant: Tenant
):
    await create_integration(api, tenant, name="claude", kind="anthropic")
    unknown = await api.post(
        tenant.url("/agents"),
        json={"name": "a", "model": "openai:gpt-test", "integration": "nope"},
        headers=tenant.headers,
    )
    body = assert_error(unknown, 422, "invalid_input")
    assert body["error"]["details"][0]["field"] == "integration"
    other_provider = await api.post(
        tenant.url("/agents"),
        json={"name": "a", "model": "openai:gpt-test", "integration": "claude"},
        headers=tenant.headers,
    )
    assert_error(other_provider, 422, "invalid_input")
    step = {"name": "ask", "type": "llm", "prompt": "hi", "model": "openai:gpt-test"}
    tool = await api.post(
        tenant.url("/tools"),
        json={"name": "t", "steps": [{**step, "integration": "nope"}]},
        headers=tenant.headers,
    )
    body = assert_error(tool, 422, "invalid_input")
    assert body["error"]["details"][0]["field"] == "steps[0].integration"


async def test_an_integration_in_use_cannot_be_deleted_or_renamed(
    api: httpx.AsyncClient, tenant: Tenant
):
    await create_integration(api, tenant, name="main", kind="openai")
    await make_agent(api, tenant, model="openai:gpt-test", integration="main")
    refused = await api.delete(tenant.url("/integrations/main"), headers=tenant.headers)
    body = assert_error(refused, 409, "conflict")
    assert body["error"]["details"]["used_by"] == ["agent 'Helper'"]
    renamed = await api.patch(
        tenant.url("/integrations/main"), json={"name": "other"}, headers=tenant.headers
    )
    assert_error(renamed, 409, "conflict")
    # A new key is fine: the agent keeps working with it.
    rotated = await api.patch(
        tenant.url("/integrations/main"), json={"api_key": "sk-new"}, headers=tenant.headers
    )
    assert rotated.status_code == 200, rotated.text


async def test_only_a_viewer_reads_and_only_an_admin_writes(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.post(
        "/api/v1/tokens",
        json={"name": "viewer", "project_id": tenant.project_id, "role": "viewer"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    viewer = {"Authorization": f"Token {response.json()['token']}"}
    await create_integration(api, tenant, name="main", kind="openai")
    assert (await api.get(tenant.url("/integrations"), headers=viewer)).status_code == 200
    denied = await api.post(
        tenant.url("/integrations"), json={"name": "x", "kind": "openai"}, headers=viewer
    )
    assert_error(denied, 403)


# Base URLs and the egress guard


@pytest.mark.parametrize(
    ("base_url", "reason", "entry"),
    [
        ("http://127.0.0.1:{port}/v1", "127.0.0.1 is a loopback address", "127.0.0.1:{port}"),
        ("http://localhost:{port}/v1", "a loopback address", "localhost:{port}"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is the cloud metadata service's address",
            "169.254.169.254",
        ),
        ("http://10.0.0.5:8000/v1", "10.0.0.5 is a private address", "10.0.0.5:8000"),
        ("https://192.168.1.20/v1", "192.168.1.20 is a private address", "192.168.1.20"),
        ("http://[::1]:11434/v1", "::1 is a loopback address", "[::1]:11434"),
        # A numeric spelling of 127.0.0.1 (the URL is normalised to it when parsed).
        ("http://2130706433:{port}/", "127.0.0.1 is a loopback address", "127.0.0.1:{port}"),
    ],
)
async def test_a_base_url_on_an_internal_address_is_refused_when_saved(
    api: httpx.AsyncClient, tenant: Tenant, base_url: str, reason: str, entry: str
):
    port = refused_port()  # nothing listens, and nothing allows it
    base_url, entry = base_url.format(port=port), entry.format(port=port)
    for kind in ("openai", "anthropic"):
        body = {"name": f"inside_{kind}", "kind": kind, "base_url": base_url, "api_key": "k"}
        response = await api.post(tenant.url("/integrations"), json=body, headers=tenant.headers)
        error = assert_error(response, 422, "blocked_destination")["error"]
        assert error["message"].startswith("base_url: ") and reason in error["message"]
        assert f"add {entry}" in error["message"]
        assert "BATON_HTTP_ALLOW_HOSTS" in error["message"]
        assert error["details"][0]["field"] == "base_url"
    listed = await api.get(tenant.url("/integrations"), headers=tenant.headers)
    assert listed.json()["items"] == []


async def test_a_base_url_cannot_be_moved_to_an_internal_address_either(
    api: httpx.AsyncClient, tenant: Tenant
):
    await create_integration(api, tenant, name="main", kind="openai", api_key=OPENAI_KEY)
    moved = await api.patch(
        tenant.url("/integrations/main"),
        json={"base_url": "http://169.254.169.254/v1", "api_key": OPENAI_KEY},
        headers=tenant.headers,
    )
    assert_error(moved, 422, "blocked_destination")
    current = await api.get(tenant.url("/integrations/main"), headers=tenant.headers)
    assert current.json()["base_url"] is None


async def test_a_bare_host_allow_entry_does_not_open_the_providers_port(
    settings: Settings, temporal_env: WorkflowEnvironment, tenant: Tenant, openai_server: FakeOpenAI
):
    # `127.0.0.1` allows its ports 80 and 443 only, not the port the provider listens on.
    bare = settings.model_copy(update={"http_allow_hosts": ["127.0.0.1"]})
    async with api_client(bare, temporal_env.client) as client:
        response = await client.post(
            tenant.url("/integrations"),
            json={"name": "local", "kind": "openai", "base_url": openai_server.base_url},
            headers=tenant.headers,
        )
    error = assert_error(response, 422, "blocked_destination")["error"]
    assert f"add 127.0.0.1:{openai_server.port} to BATON_HTTP_ALLOW_HOSTS" in error["message"]


async def test_changing_the_base_url_or_kind_needs_the_key_again(
    api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI, attacker_server: FakeOpenAI
):
    await create_integration(
        api, tenant, name="gpt", kind="openai", base_url=openai_server.base_url, api_key=OPENAI_KEY
    )
    url = tenant.url("/integrations/gpt")
    for change in ({"base_url": attacker_server.base_url}, {"kind": "anthropic"}):
        refused = await api.patch(url, json=change, headers=tenant.headers)
        error = assert_error(refused, 422, "invalid_input")["error"]
        assert "re-enter the key" in error["message"]
        assert error["details"][0]["field"] == "api_key"
    # The same base URL again, or a change that moves nothing, needs no key.
    for unchanged in ({"base_url": openai_server.base_url}, {"default": True}):
        assert (await api.patch(url, json=unchanged, headers=tenant.headers)).status_code == 200
    current = (await api.get(url, headers=tenant.headers)).json()
    assert (current["kind"], current["base_url"]) == ("openai", openai_server.base_url)

    moved = await api.patch(
        url,
        json={"base_url": attacker_server.base_url, "api_key": "sk-for-the-new-server"},
        headers=tenant.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["base_url"] == attacker_server.base_url
    # Without a stored key there is nothing to re-enter.
    await create_integration(api, tenant, name="keyless", kind="openai")
    keyless = await api.patch(
        tenant.url("/integrations/keyless"),
        json={"base_url": openai_server.base_url},
        headers=tenant.headers,
    )
    assert keyless.status_code == 200, keyless.text


async def test_an_admin_cannot_redirect_the_stored_key_to_a_server_of_their_own(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    openai_server: FakeOpenAI,
    attacker_server: FakeOpenAI,
):
    openai_server.reset()
    attacker_server.reset()
    openai_server.reply_text("From the real provider.")
    attacker_server.reply_text("Thanks for the key.")
    await create_integration(
        api, tenant, name="gpt", kind="openai", base_url=openai_server.base_url, api_key=OPENAI_KEY
    )
    refused = await api.patch(
        tenant.url("/integrations/gpt"),
        json={"base_url": attacker_server.base_url},
        headers=tenant.headers,
    )
    assert_error(refused, 422, "invalid_input")
    agent = await make_agent(api, tenant, model="openai:gpt-test", integration="gpt")

    task = await run_task(api, tenant, agent, "hello")

    assert task["status"] == "completed", task["error"]
    assert task["messages"][-1]["content"] == "From the real provider."
    assert [r.credential for r in openai_server.requests] == [OPENAI_KEY]
    assert attacker_server.requests == []


async def test_a_base_url_stored_before_the_guard_is_refused_when_called(
    api: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    openai_server: FakeOpenAI,
):
    openai_server.reset()
    openai_server.reply_error(500, "internal: here is what an internal server answers")
    # An old row, written before base URLs were checked when saved: straight to the table.
    async with session_factory.begin() as session:
        await integration_repo.create_integration(
            session=session,
            box=SecretBox.from_settings(settings),
            project_id=tenant.project_id,
            spec=IntegrationSpec(name="old", kind="openai", base_url=openai_server.base_url),
            key=OPENAI_KEY,
        )
    agent = await make_agent(api, tenant, model="openai:gpt-test", integration="old")
    # This operator allows nothing local.
    strict = settings.model_copy(update={"http_allow_hosts": []})

    async with worker_on(temporal_env.client, strict, session_factory):
        task = await run_task(api, tenant, agent, "hello")

    assert task["status"] == "failed"
    assert f"openai at {openai_server.base_url} was not called" in task["error"]
    assert "127.0.0.1 is a loopback address" in task["error"]
    assert "internal server answers" not in json.dumps(task)
    assert OPENAI_KEY not in json.dumps(task)
    assert openai_server.requests == []


# Tasks that use an integration


async def test_a_task_reaches_openai_through_the_projects_integration_and_the_key_stays_hidden(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    responses: list[str],
    openai_server: FakeOpenAI,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    openai_server.reset()
    openai_server.reply_chunks(
        chunk({"role": "assistant", "content": None}),
        tool_calls(tool_delta(index=0, id="call_1", name="echo_tool", arguments='{"text": "k"}')),
        chunk({}, finish_reason="tool_calls"),
        usage_chunk(20, 5),
    )
    openai_server.reply_text("Done.")
    # The worker's settings have no OpenAI key: only the integration can provide one.
    await create_integration(
        api,
        tenant,
        name="gpt",
        kind="openai",
        base_url=openai_server.base_url,
        api_key=OPENAI_KEY,
    )
    tool = await make_tool(api, tenant)
    agent = await make_agent(
        api, tenant, model="openai:gpt-test", integration="gpt", tools=[{"tool_id": tool}]
    )

    task = await run_task(api, tenant, agent, "Use the tool")

    assert task["status"] == "completed", task["error"]
    assert task["messages"][-1]["content"] == "Done."
    assert [r.credential for r in openai_server.requests] == [OPENAI_KEY, OPENAI_KEY]
    events = await events_of(session_factory, task["id"])
    runs = [e.data["run_id"] for e in events if e.type == "tool.run.started"]
    assert len(runs) == 1
    history = await histories_of(
        temporal_env, [task["workflow_id"], *(tool_run_workflow_id(r) for r in runs)]
    )
    assert '"integration":"gpt"' in history  # the reference travels, the key does not
    assert OPENAI_KEY not in history
    assert not any(OPENAI_KEY in json.dumps(e.data) for e in events)
    streamed = await api.get(tenant.url(f"/tasks/{task['id']}/events"), headers=tenant.headers)
    assert "Done." in streamed.text
    assert not any(OPENAI_KEY in body for body in responses)


async def test_without_a_name_the_projects_only_integration_of_the_kind_is_used(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, anthropic_server: FakeAnthropic
):
    anthropic_server.reset()
    anthropic_server.reply(
        "Checking.", tool_uses=(ToolUse("toolu_1", "echo_tool", ('{"text": "c"}',)),)
    )
    anthropic_server.reply("Claude is done.")
    await create_integration(
        api,
        tenant,
        name="claude",
        kind="anthropic",
        base_url=anthropic_server.base_url,
        api_key=ANTHROPIC_KEY,
    )
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, model="anthropic:claude-test", tools=[{"tool_id": tool}])

    task = await run_task(api, tenant, agent, "Use the tool")

    assert task["status"] == "completed", task["error"]
    assert [m["content"] for m in task["messages"]][-2:] == ["tool got c", "Claude is done."]
    assert [r.credential for r in anthropic_server.requests] == [ANTHROPIC_KEY, ANTHROPIC_KEY]
    assert ANTHROPIC_KEY not in json.dumps(task)


async def test_of_several_integrations_the_default_one_serves_agents_that_name_none(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, openai_server: FakeOpenAI
):
    openai_server.reset()
    openai_server.reply_text("From the default.")
    await create_integration(
        api,
        tenant,
        name="first",
        kind="openai",
        base_url=openai_server.base_url,
        api_key="sk-first",
    )
    await create_integration(
        api,
        tenant,
        name="second",
        kind="openai",
        base_url=openai_server.base_url,
        api_key="sk-second",
        default=True,
    )
    agent = await make_agent(api, tenant, model="openai:gpt-test")

    task = await run_task(api, tenant, agent, "hello")

    assert task["status"] == "completed", task["error"]
    assert openai_server.requests[0].credential == "sk-second"


async def test_an_llm_step_uses_the_integration_it_names(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, openai_server: FakeOpenAI
):
    openai_server.reset()
    openai_server.reply_text("A summary.")
    await create_integration(
        api,
        tenant,
        name="gpt",
        kind="openai",
        base_url=openai_server.base_url,
        api_key=OPENAI_KEY,
    )
    step = {
        "name": "ask",
        "type": "llm",
        "prompt": "Summarise",
        "model": "openai:gpt-test",
        "integration": "gpt",
    }
    tool = await api.post(
        tenant.url("/tools"), json={"name": "Summary", "steps": [step]}, headers=tenant.headers
    )
    assert tool.status_code == 201, tool.text
    run = await api.post(
        tenant.url(f"/tools/{tool.json()['id']}/runs"),
        json={"params": {}, "wait": True},
        headers=tenant.headers,
    )
    assert run.status_code == 201, run.text
    assert run.json()["output"] == "A summary."
    assert openai_server.requests[0].credential == OPENAI_KEY
    assert OPENAI_KEY not in run.text


async def test_an_enrichments_llm_step_uses_the_integration_it_names(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, openai_server: FakeOpenAI
):
    """A row runs the tool as a tool run does: its llm step reaches the project's integration
    with the project's key (not the server's), and the key stays out of the rows."""
    openai_server.reset()
    openai_server.reply_text("positive")
    await create_integration(
        api, tenant, name="gpt", kind="openai", base_url=openai_server.base_url, api_key=OPENAI_KEY
    )
    step = {
        "name": "ask",
        "type": "llm",
        "prompt": "Mood of: {{ params.text }}",
        "model": "openai:gpt-test",
        "integration": "gpt",
    }
    tool = await api.post(
        tenant.url("/tools"),
        json={"name": "Mood", "params": [{"name": "text"}], "steps": [step]},
        headers=tenant.headers,
    )
    assert tool.status_code == 201, tool.text
    created = await api.post(
        tenant.url("/knowledge/sets"),
        json={"name": "notes", "columns": [{"name": n} for n in ("text", "mood", "mood_error")]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    sets = tenant.url(f"/knowledge/sets/{created.json()['id']}")
    added = await api.post(f"{sets}/rows", json=[{"text": "a fine day"}], headers=tenant.headers)
    assert added.status_code == 201, added.text
    started = await api.post(
        f"{sets}/enrichments",
        json={
            "tool_id": tool.json()["id"],
            "input_mapping": {"text": {"column": "text"}},
            "output_mapping": {"mood": "@"},
        },
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    async with asyncio.timeout(30):
        while True:
            job = (
                await api.get(f"{sets}/enrichments/{started.json()['id']}", headers=tenant.headers)
            ).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            await asyncio.sleep(0.1)
    rows = (await api.get(f"{sets}/rows", headers=tenant.headers)).text
    assert job["status"] == "succeeded", job
    assert (job["done"], job["failed"]) == (1, 0), rows
    assert "positive" in rows and OPENAI_KEY not in rows
    assert [request.credential for request in openai_server.requests] == [OPENAI_KEY]
