"""Snippets: a project's named texts, read as `{{ snippets.<name> }}` by tools and agents,
checked when a definition is saved and pinned when a run starts."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.worker import Worker

from tests.support import Tenant, assert_error
from tests.test_tools import run, save


def greeting_tool(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "greet",
        "params": [{"name": "who"}],
        "steps": [
            {
                "name": "say",
                "type": "template",
                "template": "{{ snippets.greeting }}, {{ params.who }}. {{ snippets.signoff }}",
            }
        ],
        **overrides,
    }


async def put(api: httpx.AsyncClient, tenant: Tenant, name: str, text: str) -> httpx.Response:
    return await api.put(
        tenant.url(f"/snippets/{name}"), json={"text": text}, headers=tenant.headers
    )


async def test_snippets_are_created_replaced_listed_and_deleted(
    api: httpx.AsyncClient, tenant: Tenant
):
    created = await put(api, tenant, "greeting", "Hello")
    assert created.status_code == 201
    assert created.json()["text"] == "Hello"
    replaced = await put(api, tenant, "greeting", "Good morning")
    assert replaced.status_code == 200
    assert (await api.get(tenant.url("/snippets/greeting"), headers=tenant.headers)).json()[
        "text"
    ] == "Good morning"
    listed = (await api.get(tenant.url("/snippets"), headers=tenant.headers)).json()
    assert [s["name"] for s in listed["items"]] == ["greeting"]

    deleted = await api.delete(tenant.url("/snippets/greeting"), headers=tenant.headers)
    assert deleted.status_code == 204
    missing = await api.get(tenant.url("/snippets/greeting"), headers=tenant.headers)
    assert_error(missing, 404)


async def test_bad_snippet_input_is_a_clear_4xx(api: httpx.AsyncClient, tenant: Tenant):
    assert_error(await put(api, tenant, "not-an-identifier", "x"), 422)
    wrong_type = await api.put(
        tenant.url("/snippets/ok"), json={"text": 12}, headers=tenant.headers
    )
    assert_error(wrong_type, 422)
    unknown_field = await api.put(
        tenant.url("/snippets/ok"), json={"text": "x", "extra": 1}, headers=tenant.headers
    )
    assert_error(unknown_field, 422)


async def test_a_tool_naming_an_unknown_snippet_is_refused_when_saved(
    api: httpx.AsyncClient, tenant: Tenant
):
    await put(api, tenant, "greeting", "Hello")
    response = await api.post(tenant.url("/tools"), json=greeting_tool(), headers=tenant.headers)
    body = assert_error(response, 422)
    assert "unknown snippet 'signoff'" in body["error"]["message"]
    assert body["error"]["details"][0]["field"] == "template"


async def test_a_tool_run_reads_the_snippet_texts_pinned_when_it_started(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    await put(api, tenant, "greeting", "Hello")
    await put(api, tenant, "signoff", "Bye.")
    tool = await save(api, tenant, greeting_tool())

    first = await run(api, tenant, tool["id"], {"who": "Ada"})
    assert first["status"] == "succeeded", first
    assert first["output"] == "Hello, Ada. Bye."

    await put(api, tenant, "greeting", "Welcome")
    second = await run(api, tenant, tool["id"], {"who": "Ada"})
    assert second["output"] == "Welcome, Ada. Bye."


async def test_a_snippet_in_use_cannot_be_deleted(api: httpx.AsyncClient, tenant: Tenant):
    await put(api, tenant, "greeting", "Hello")
    await put(api, tenant, "signoff", "Bye.")
    await save(api, tenant, greeting_tool())
    response = await api.delete(tenant.url("/snippets/signoff"), headers=tenant.headers)
    body = assert_error(response, 409)
    assert body["error"]["details"]["used_by"] == ["tool 'greet'"]
    still_there = await api.get(tenant.url("/snippets/signoff"), headers=tenant.headers)
    assert still_there.status_code == 200


async def test_another_tenants_snippets_are_invisible(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    await put(api, tenant, "greeting", "Hello")
    foreign = await api.get(other_tenant.url("/snippets/greeting"), headers=other_tenant.headers)
    assert_error(foreign, 404)
    across = await api.get(tenant.url("/snippets/greeting"), headers=other_tenant.headers)
    assert_error(across, 404)
    theirs = await api.get(other_tenant.url("/snippets"), headers=other_tenant.headers)
    assert theirs.json()["items"] == []
    # The other tenant cannot save a tool that reads this tenant's snippet.
    response = await api.post(
        other_tenant.url("/tools"),
        json={
            "name": "t",
            "steps": [{"name": "s", "type": "template", "template": "{{ snippets.greeting }}"}],
        },
        headers=other_tenant.headers,
    )
    assert_error(response, 422)
