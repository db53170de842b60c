"""Editing an agent in the console: the form covers its model, prompt, tools with their
approval modes, knowledge and params, saves a new version through the API's update (so it
checks what the API checks), keeps what the form does not show, and is for editors of the
project only."""

from __future__ import annotations

import json

import httpx

from tests.support import Tenant, create_token
from tests.test_agent_tasks import make_agent, make_tool
from tests.test_console import csrf_of, signed_in


async def make_set(api: httpx.AsyncClient, tenant: Tenant, name: str = "Faq") -> str:
    response = await api.post(
        tenant.url("/knowledge/sets"), json={"name": name}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    set_id: str = response.json()["id"]
    return set_id


async def test_the_edit_form_saves_a_new_version_with_tools_knowledge_and_params(
    api: httpx.AsyncClient, tenant: Tenant
):
    echo, other = await make_tool(api, tenant), await make_tool(api, tenant, name="Other tool")
    faq = await make_set(api, tenant)
    agent_id = await make_agent(
        api,
        tenant,
        tools=[{"tool_id": echo, "approval": "auto", "max_auto_runs": 3}],
        max_iterations=7,
    )
    await signed_in(api, tenant.token)
    form = await api.get(f"/agents/{agent_id}/edit")
    assert form.status_code == 200
    assert f'<label for="tool-{echo}">Echo tool</label>' in form.text
    assert f'<label for="knowledge-{faq}">Faq</label>' in form.text
    assert "Saving makes version 2" in form.text

    params = [{"name": "city", "type": "text", "required": False}]
    saved = await api.post(
        f"/agents/{agent_id}",
        data={
            "name": "Helper",
            "model": "scripted:echo",
            "temperature": "0.5",
            "system_prompt": "Weather in {{ params.city }}.",
            "welcome_message": "Hi",
            f"tool.{echo}": "required",
            f"tool.{other}": "",
            f"knowledge.{faq}": "search",
            "params": json.dumps(params),
            "csrf": csrf_of(form),
        },
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/agents/{agent_id}"
    read = (await api.get(tenant.url(f"/agents/{agent_id}"), headers=tenant.headers)).json()
    assert read["version"] == 2
    assert (read["model"], read["temperature"]) == ("scripted:echo", 0.5)
    assert read["system_prompt"] == "Weather in {{ params.city }}."
    # The tool's other setting is kept, and what the form does not show stays as it was.
    assert read["tools"] == [{"tool_id": echo, "approval": "required", "max_auto_runs": 3}]
    assert [(k["set_id"], k["mode"]) for k in read["knowledge"]] == [(faq, "search")]
    assert [p["name"] for p in read["params"]] == ["city"]
    assert read["max_iterations"] == 7
    page = await api.get(f"/agents/{agent_id}")
    assert "<td>2</td>" in page.text and "<code>city</code>" in page.text


async def test_a_refused_edit_shows_the_apis_reason_and_keeps_the_form(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent_id = await make_agent(api, tenant, tools=[])
    await signed_in(api, tenant.token)
    form = await api.get(f"/agents/{agent_id}/edit")
    base = {"name": "Helper", "model": "scripted:tools", "csrf": csrf_of(form)}

    bad_json = await api.post(f"/agents/{agent_id}", data={**base, "params": "[{"})
    assert bad_json.status_code == 422 and "params: not JSON" in bad_json.text
    assert "[{</textarea>" in bad_json.text
    unknown = await api.post(
        f"/agents/{agent_id}",
        data={**base, "system_prompt": "Hello {{ params.nobody }}", "params": "[]"},
    )
    assert unknown.status_code == 422 and "nobody" in unknown.text
    assert "Hello {{ params.nobody }}</textarea>" in unknown.text
    forged_tool = await api.post(f"/agents/{agent_id}", data={**base, "tool.nope": "auto"})
    assert forged_tool.status_code == 422 and "no tool &#39;nope&#39;" in forged_tool.text
    read = (await api.get(tenant.url(f"/agents/{agent_id}"), headers=tenant.headers)).json()
    assert read["version"] == 1


async def test_only_an_editor_of_the_project_edits_its_agent(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    agent_id = await make_agent(api, tenant, tools=[])
    viewer = await create_token(api, tenant.headers, role="viewer")
    await signed_in(api, viewer["token"])
    page = await api.get(f"/agents/{agent_id}")
    assert page.status_code == 200 and "/edit" not in page.text
    assert (await api.get(f"/agents/{agent_id}/edit")).status_code == 403
    refused = await api.post(
        f"/agents/{agent_id}", data={"name": "Mine", "model": "x", "csrf": csrf_of(page)}
    )
    assert refused.status_code == 403

    await signed_in(api, other_tenant.token)
    theirs = await api.get("/agents")
    assert (await api.get(f"/agents/{agent_id}/edit")).status_code == 404
    hidden = await api.post(
        f"/agents/{agent_id}", data={"name": "Mine", "model": "x", "csrf": csrf_of(theirs)}
    )
    assert hidden.status_code == 404
    read = (await api.get(tenant.url(f"/agents/{agent_id}"), headers=tenant.headers)).json()
    assert (read["name"], read["version"]) == ("Helper", 1)
