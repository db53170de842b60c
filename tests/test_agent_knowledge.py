"""Agents with knowledge and snippets: an attached set is searched through a tool or placed
in the system prompt up to a token budget; snippets fill the system prompt. Real Temporal,
real worker, and the model reached over the OpenAI wire protocol where the prompt matters."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker

from tests.fakes.openai_server import FakeOpenAI
from tests.support import Tenant, assert_error
from tests.support.factories import FINAL, make_agent, start_task, task_in
from tests.test_agent_tasks import openai_api  # noqa: F401 (fixtures used by name)
from tests.test_knowledge_steps import FACTS, new_set


async def test_an_agent_searches_an_attached_set_through_a_tool(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    set_id = await new_set(session_factory, tenant, rows=FACTS)
    agent = await make_agent(api, tenant, tools=[], knowledge=[{"set_id": set_id}])
    task_id = await start_task(
        api, tenant, agent, 'call search_facts-none {"query": "Alps mountain"}'
    )

    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert [m["role"] for m in task["messages"]] == ["user", "assistant", "tool", "assistant"]
    hits = json.loads(task["messages"][2]["content"])
    assert hits[0]["row"]["title"] == "Mountains"
    assert isinstance(hits[0]["row_id"], int)


async def test_prompt_knowledge_and_snippets_fill_the_system_prompt(
    openai_api: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: async_sessionmaker[AsyncSession],
):
    api = openai_api
    set_id = await new_set(session_factory, tenant, rows=FACTS)
    put = await api.put(
        tenant.url("/snippets/persona"),
        json={"text": "You are a geographer."},
        headers=tenant.headers,
    )
    assert put.status_code == 201
    openai_server.reply_text("Mont Blanc.")
    agent = await make_agent(
        api,
        tenant,
        tools=[],
        model="openai:gpt-test",
        system_prompt="{{ snippets.persona }} Answer briefly.",
        # Room for about two of the three rows.
        knowledge=[{"set_id": set_id, "mode": "prompt", "token_budget": 50}],
    )
    task_id = await start_task(api, tenant, agent, "Which is the highest mountain of the Alps?")
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]

    system = openai_server.requests[0].body["messages"][0]
    assert system["role"] == "system"
    prompt: str = system["content"]
    assert prompt.startswith("You are a geographer. Answer briefly.")
    assert "Knowledge set 'facts-none'" in prompt
    # Rows in their order, until the budget: the first two fit, the third does not.
    lines = [line for line in prompt.splitlines() if line.startswith("[row ")]
    assert len(lines) == 2
    assert "Danube" in lines[0] and "Mont Blanc" in lines[1]
    assert "Atacama" not in prompt
    assert "more rows left out" in prompt


async def test_an_agent_naming_unknown_snippets_or_sets_is_refused(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, session_factory: Any
):
    body: dict[str, Any] = {"name": "A", "system_prompt": "{{ snippets.nope }}"}
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    error = assert_error(response, 422)
    assert error["error"]["details"][0]["field"] == "system_prompt"

    theirs = await new_set(session_factory, other_tenant, rows=FACTS)
    body = {"name": "A", "knowledge": [{"set_id": theirs}]}
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    error = assert_error(response, 422)
    assert error["error"]["details"][0]["field"] == "knowledge[0].set_id"


async def test_a_snippet_read_by_an_agent_cannot_be_deleted(api: httpx.AsyncClient, tenant: Tenant):
    await api.put(tenant.url("/snippets/tone"), json={"text": "Be kind."}, headers=tenant.headers)
    await make_agent(api, tenant, tools=[], system_prompt="{{ snippets.tone }}")
    response = await api.delete(tenant.url("/snippets/tone"), headers=tenant.headers)
    assert assert_error(response, 409)["error"]["details"]["used_by"] == ["agent 'Helper'"]


async def test_an_agents_knowledge_is_changed_by_a_patch(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, session_factory: Any
):
    set_id = await new_set(session_factory, tenant, rows=FACTS)
    agent = await make_agent(api, tenant, tools=[])
    url = tenant.url(f"/agents/{agent}")

    attach = {"knowledge": [{"set_id": set_id, "mode": "prompt", "token_budget": 300}]}
    patched = await api.patch(url, json=attach, headers=tenant.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["knowledge"] == [
        {
            "set_id": set_id,
            "mode": "prompt",
            "token_budget": 300,
            "description": "",
            "rerank": None,
        }
    ]
    assert patched.json()["version"] == 2
    shown = (await api.get(url, headers=tenant.headers)).json()
    assert shown["knowledge"] == patched.json()["knowledge"]

    # Checked as on create: another organisation's set is unknown here.
    theirs = await new_set(session_factory, other_tenant, rows=FACTS)
    refused = await api.patch(url, json={"knowledge": [{"set_id": theirs}]}, headers=tenant.headers)
    assert assert_error(refused, 422)["error"]["details"][0]["field"] == "knowledge[0].set_id"

    detached = await api.patch(url, json={"knowledge": []}, headers=tenant.headers)
    assert detached.status_code == 200, detached.text
    assert detached.json()["knowledge"] == []
    assert detached.json()["name"] == "Helper"
