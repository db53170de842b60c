"""Clone templates: an agent, a tool or a workforce cloned into another project of the same
organisation, with what it runs; exported as a portable JSON or YAML document (a `kind`, a
`version`, everything by name, no id, secret or key of this installation) and imported back
as an equal definition. And what an attacker tries: another organisation's project, another
project's agent, documents that are wrong, huge or built to explode."""

from __future__ import annotations

import json
from typing import Any

import httpx
import yaml

from tests.support import Tenant, assert_error, auth, create_token, items_of
from tests.test_template_bounds import ALIAS_BOMB

YAML = {"Content-Type": "application/yaml"}


async def second_project(api: httpx.AsyncClient, tenant: Tenant, name: str = "Second") -> Tenant:
    """Another project of the tenant's organisation, reached with the same token."""
    response = await api.post("/api/v1/projects", json={"name": name}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return Tenant(org_id=tenant.org_id, project_id=response.json()["id"], token=tenant.token)


async def post(api: httpx.AsyncClient, tenant: Tenant, path: str, body: Any) -> dict[str, Any]:
    response = await api.post(tenant.url(path), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def knowledge_set(api: httpx.AsyncClient, tenant: Tenant, name: str) -> str:
    created = await post(api, tenant, "/knowledge/sets", {"name": name})
    set_id: str = created["id"]
    return set_id


async def lookup_tools(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    """ "Lookup" calls "Format": a tool and the tool it needs."""
    formatter = await post(
        api,
        tenant,
        "/tools",
        {
            "name": "Format",
            "params": [{"name": "text"}],
            "steps": [{"name": "f", "type": "template", "template": "[{{ params.text }}]"}],
        },
    )
    lookup = await post(
        api,
        tenant,
        "/tools",
        {
            "name": "Lookup",
            "description": "Looks a thing up",
            "params": [{"name": "query"}],
            "steps": [
                {
                    "name": "call",
                    "type": "tool",
                    "tool_id": formatter["id"],
                    "params": {"text": "{{ params.query }}"},
                }
            ],
        },
    )
    return {"Format": formatter["id"], "Lookup": lookup["id"]}


async def helper_agent(
    api: httpx.AsyncClient, tenant: Tenant, tools: dict[str, str], set_id: str, name: str = "Helper"
) -> dict[str, Any]:
    return await post(
        api,
        tenant,
        "/agents",
        {
            "name": name,
            "system_prompt": "Help {{ params.who }}.",
            "params": [{"name": "who"}],
            "tools": [{"tool_id": tools["Lookup"], "approval": "required"}],
            "knowledge": [{"set_id": set_id, "mode": "search"}],
            "max_iterations": 4,
        },
    )


async def export(api: httpx.AsyncClient, tenant: Tenant, path: str, fmt: str = "json") -> Any:
    response = await api.get(tenant.url(f"{path}/export?format={fmt}"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response


def definition_of(read: dict[str, Any]) -> dict[str, Any]:
    """A read without what belongs to the row rather than the definition."""
    return {
        k: v
        for k, v in read.items()
        if k not in ("id", "project_id", "version", "created_at", "updated_at")
    }


async def names_of(api: httpx.AsyncClient, tenant: Tenant, path: str) -> list[str]:
    return sorted(item["name"] for item in await items_of(api, tenant.url(path), tenant.headers))


# Clone


async def test_an_agent_clones_into_another_project_with_its_tools_and_reuses_them_next_time(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    second = await second_project(api, tenant)
    tools = await lookup_tools(api, tenant)
    agent = await helper_agent(api, tenant, tools, await knowledge_set(api, tenant, "faq"))
    their_set = await knowledge_set(api, second, "faq")

    url = tenant.url(f"/agents/{agent['id']}/clone")
    cloned = await api.post(url, json={"project_id": second.project_id}, headers=tenant.headers)
    assert cloned.status_code == 201, cloned.text
    copy = cloned.json()
    assert copy["project_id"] == second.project_id and copy["name"] == "Helper"
    their_tools = {t["name"]: t for t in await items_of(api, second.url("/tools"), tenant.headers)}
    assert sorted(their_tools) == ["Format", "Lookup"]
    assert copy["tools"] == [
        {"tool_id": their_tools["Lookup"]["id"], "approval": "required", "max_auto_runs": None}
    ]
    assert copy["knowledge"][0]["set_id"] == their_set
    assert definition_of(copy) | {"tools": [], "knowledge": []} == definition_of(agent) | {
        "tools": [],
        "knowledge": [],
    }
    # The cloned Lookup calls the cloned Format, not the source project's.
    call = their_tools["Lookup"]["steps"][0]
    assert call["tool_id"] == their_tools["Format"]["id"] != tools["Format"]

    again = await api.post(url, json={"project_id": second.project_id}, headers=tenant.headers)
    assert again.status_code == 201, again.text
    assert again.json()["tools"] == copy["tools"]
    assert await names_of(api, second, "/tools") == ["Format", "Lookup"]
    assert await names_of(api, second, "/agents") == ["Helper", "Helper"]

    audit = await api.get(
        "/api/v1/audit", params={"action": "definition.cloned"}, headers=tenant.headers
    )
    entries = audit.json()["items"]
    assert [e["detail"]["tools_created"] for e in entries] == [0, 2]
    assert entries[1]["project_id"] == second.project_id
    assert entries[1]["target_id"] == copy["id"] and entries[1]["target_type"] == "agent"
    assert entries[1]["detail"]["from_project_id"] == tenant.project_id
    assert entries[1]["detail"]["from_id"] == agent["id"]


async def test_in_its_own_project_a_clone_is_a_copy_that_runs_the_same_tools(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    tools = await lookup_tools(api, tenant)
    agent = await helper_agent(api, tenant, tools, await knowledge_set(api, tenant, "faq"))
    for body in (None, {}, {"project_id": tenant.project_id}):
        url = tenant.url(f"/agents/{agent['id']}/clone")
        cloned = await api.post(url, json=body, headers=tenant.headers)
        assert cloned.status_code == 201, cloned.text
        assert cloned.json()["name"] == "Helper (copy)"
        assert cloned.json()["tools"] == agent["tools"]
    lookup = tenant.url(f"/tools/{tools['Lookup']}/clone")
    tool = await api.post(lookup, headers=tenant.headers)
    assert tool.status_code == 201, tool.text
    assert tool.json()["name"] == "Lookup (copy)"
    assert tool.json()["steps"][0]["tool_id"] == tools["Format"]
    assert len(await items_of(api, tenant.url("/tools"), tenant.headers)) == 3


async def test_a_workforce_clones_with_its_agents_and_tools_using_those_the_target_has(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    second = await second_project(api, tenant)
    tools = await lookup_tools(api, tenant)
    helper = await helper_agent(api, tenant, tools, await knowledge_set(api, tenant, "faq"))
    closer = await post(api, tenant, "/agents", {"name": "Closer"})
    workforce = await post(
        api,
        tenant,
        "/workforces",
        {
            "name": "Desk",
            "entry": "help",
            "nodes": [
                {"id": "help", "type": "agent", "agent_id": helper["id"]},
                {
                    "id": "look",
                    "type": "tool",
                    "tool_id": tools["Lookup"],
                    "params": {"query": "{{ input }}"},
                },
                {"id": "close", "type": "agent", "agent_id": closer["id"]},
            ],
            "edges": [{"from": "help", "to": "look"}, {"from": "look", "to": "close"}],
        },
    )
    await knowledge_set(api, second, "faq")
    their_closer = await post(api, second, "/agents", {"name": "Closer", "description": "theirs"})

    cloned = await api.post(
        tenant.url(f"/workforces/{workforce['id']}/clone"),
        json={"project_id": second.project_id},
        headers=tenant.headers,
    )
    assert cloned.status_code == 201, cloned.text
    nodes = {n["id"]: n for n in cloned.json()["nodes"]}
    agents = {a["name"]: a for a in await items_of(api, second.url("/agents"), tenant.headers)}
    their_tools = {t["name"]: t for t in await items_of(api, second.url("/tools"), tenant.headers)}
    assert sorted(agents) == ["Closer", "Helper"] and sorted(their_tools) == ["Format", "Lookup"]
    assert nodes["close"]["agent_id"] == their_closer["id"]
    assert agents["Closer"]["description"] == "theirs"
    assert nodes["help"]["agent_id"] == agents["Helper"]["id"] != helper["id"]
    assert nodes["look"]["tool_id"] == their_tools["Lookup"]["id"]
    assert agents["Helper"]["tools"][0]["tool_id"] == their_tools["Lookup"]["id"]
    assert cloned.json()["edges"] == workforce["edges"]


# Export and import


async def test_each_kind_exports_a_document_with_no_id_and_imports_back_equal(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    tools = await lookup_tools(api, tenant)
    set_id = await knowledge_set(api, tenant, "faq")
    agent = await helper_agent(api, tenant, tools, set_id)
    # Made after Lookup, named before it: a document's order does not follow ids.
    alpha = await post(
        api,
        tenant,
        "/tools",
        {"name": "Alpha", "steps": [{"name": "a", "type": "template", "template": "a"}]},
    )
    workforce = await post(
        api,
        tenant,
        "/workforces",
        {
            "name": "Pair",
            "entry": "a",
            "nodes": [
                {"id": "a", "type": "agent", "agent_id": agent["id"]},
                {"id": "b", "type": "tool", "tool_id": alpha["id"]},
            ],
            "edges": [{"from": "a", "to": "b"}],
        },
    )
    await knowledge_set(api, other_tenant, "faq")
    ids = [tenant.project_id, set_id, agent["id"], workforce["id"], alpha["id"], *tools.values()]
    for path, kind in (
        (f"/tools/{tools['Lookup']}", "tool"),
        (f"/agents/{agent['id']}", "agent"),
        (f"/workforces/{workforce['id']}", "workforce"),
    ):
        as_json = await export(api, tenant, path)
        document = as_json.json()
        assert (document["kind"], document["version"]) == (kind, 1)
        assert not [i for i in ids if i in as_json.text], f"an id in the {kind} document"
        as_yaml = await export(api, tenant, path, "yaml")
        assert as_yaml.headers["content-type"].startswith("application/yaml")
        assert yaml.safe_load(as_yaml.text) == document

        # Into another organisation (another installation reads the same document).
        imported = await api.post(
            other_tenant.url(f"/{kind}s/import"),
            content=as_yaml.text,
            headers={**other_tenant.headers, **YAML},
        )
        assert imported.status_code == 201, imported.text
        again = await export(api, other_tenant, f"/{kind}s/{imported.json()['id']}")
        assert again.json() == document, kind
        if kind == "agent":
            assert document["definition"]["tools"] == [{"tool": "Lookup", "approval": "required"}]
            assert document["definition"]["knowledge"] == [{"knowledge_set": "faq"}]
            # Callees first, so an import can save each in turn.
            assert [t["name"] for t in document["tools"]] == ["Format", "Lookup"]
    # The tool import made Lookup and the Format it calls; the agent and workforce documents
    # found them (and then the agent) by name, and the workforce's brought Alpha.
    assert await names_of(api, other_tenant, "/tools") == ["Alpha", "Format", "Lookup"]
    assert await names_of(api, other_tenant, "/agents") == ["Helper"]
    audit = await api.get(
        "/api/v1/audit", params={"action": "definition.imported"}, headers=other_tenant.headers
    )
    entries = [(e["target_type"], e["detail"]["tools_created"]) for e in audit.json()["items"]]
    assert entries == [("workforce", 1), ("agent", 0), ("tool", 1)]


async def test_what_the_target_lacks_is_named_in_one_422_and_nothing_is_created(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    second = await second_project(api, tenant)
    secret = await api.put(
        tenant.url("/secrets/crm_key"), json={"value": "sk-very-secret"}, headers=tenant.headers
    )
    assert secret.status_code == 200, secret.text  # a secret's PUT answers 200, new or not
    snippet = await api.put(
        tenant.url("/snippets/tone"), json={"text": "Be brief."}, headers=tenant.headers
    )
    assert snippet.status_code == 201, snippet.text  # a new snippet
    integration = await post(
        api,
        tenant,
        "/integrations",
        {"name": "gpt", "kind": "openai", "base_url": "https://api.example.com/v1"}
        | {"api_key": "sk-integration-key"},
    )
    crm = await post(
        api,
        tenant,
        "/tools",
        {
            "name": "CRM",
            "steps": [
                {
                    "name": "get",
                    "type": "http",
                    "url": "https://crm.example.com/x",
                    "auth_secret": "crm_key",
                }
            ],
        },
    )
    agent = await post(
        api,
        tenant,
        "/agents",
        {
            "name": "Seller",
            "model": "openai:gpt-4o-mini",
            "integration": integration["name"],
            "system_prompt": "{{ snippets.tone }}",
            "tools": [{"tool_id": crm["id"]}],
            "knowledge": [{"set_id": await knowledge_set(api, tenant, "leads")}],
        },
    )
    document = await export(api, tenant, f"/agents/{agent['id']}")
    assert "sk-" not in document.text and "api.example.com" not in document.text

    cloned = await api.post(
        tenant.url(f"/agents/{agent['id']}/clone"),
        json={"project_id": second.project_id},
        headers=tenant.headers,
    )
    error = assert_error(cloned, 422, "invalid_input")["error"]
    assert sorted((d["kind"], d["name"]) for d in error["details"]) == [
        ("integration", "gpt"),
        ("knowledge set", "leads"),
        ("secret", "crm_key"),
        ("snippet", "tone"),
    ]
    assert "secret 'crm_key'" in error["message"] and "knowledge set 'leads'" in error["message"]
    assert {d["used_by"] for d in error["details"]} == {"agent 'Seller'", "tool 'CRM'"}
    assert await names_of(api, second, "/tools") == []
    assert await names_of(api, second, "/agents") == []


async def test_nobody_clones_into_a_project_their_token_does_not_reach_as_an_editor(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    second = await second_project(api, tenant)
    tools = await lookup_tools(api, tenant)
    url = tenant.url(f"/tools/{tools['Lookup']}/clone")
    # Another organisation's project, even named by its owner's own token: not found.
    elsewhere = await api.post(
        url, json={"project_id": other_tenant.project_id}, headers=tenant.headers
    )
    assert_error(elsewhere, 404, "not_found")
    assert_error(
        await api.post(url, json={"project_id": "no-such-project"}, headers=tenant.headers), 404
    )
    # A token of the first project only: the second is not found from it.
    scoped = await create_token(api, tenant.headers, project_id=tenant.project_id)
    from_scoped = await api.post(
        url, json={"project_id": second.project_id}, headers=auth(scoped["token"])
    )
    assert_error(from_scoped, 404, "not_found")
    # A viewer of the organisation reads both projects but writes neither.
    viewer = await create_token(api, tenant.headers, role="viewer")
    by_viewer = await api.post(
        url, json={"project_id": second.project_id}, headers=auth(viewer["token"])
    )
    assert_error(by_viewer, 403, "permission_denied")
    # Cloning someone else's tool into one's own project: their tool is not found.
    theirs = other_tenant.url(f"/tools/{tools['Lookup']}/clone")
    assert_error(await api.post(theirs, headers=other_tenant.headers), 404, "not_found")
    refused = await api.post(url, json={"project_id": 7}, headers=tenant.headers)
    assert_error(refused, 422)
    assert_error(await api.post(url, json={"to": "x"}, headers=tenant.headers), 422)
    assert await names_of(api, other_tenant, "/tools") == []
    assert await names_of(api, second, "/tools") == []


async def test_another_projects_definitions_do_not_export(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    tools = await lookup_tools(api, tenant)
    agent = await helper_agent(api, tenant, tools, await knowledge_set(api, tenant, "faq"))
    for path in (f"/agents/{agent['id']}", f"/tools/{tools['Lookup']}"):
        # Their own project with the owner's id, and the owner's project with their token.
        for url in (other_tenant.url(f"{path}/export"), tenant.url(f"{path}/export")):
            response = await api.get(url, headers=other_tenant.headers)
            assert_error(response, 404, "not_found")
            assert "Helper" not in response.text and "Lookup" not in response.text


async def test_a_bad_document_is_refused_with_a_clear_4xx_and_creates_nothing(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    tools = await lookup_tools(api, tenant)
    document = (await export(api, tenant, f"/tools/{tools['Lookup']}")).json()
    url = tenant.url("/agents/import")

    async def refused(body: Any, status: int = 422, **headers: str) -> dict[str, Any]:
        content = body if isinstance(body, str | bytes) else json.dumps(body)
        kind = headers or {"Content-Type": "application/json"}
        response = await api.post(url, content=content, headers={**tenant.headers, **kind})
        error: dict[str, Any] = assert_error(response, status)["error"]
        return error

    agent = {"kind": "agent", "version": 1, "definition": {"name": "A"}}
    unknown = await refused({**agent, "surprise": True})
    assert unknown["details"][0]["loc"] == ["surprise"]
    inner = await refused({**agent, "definition": {"name": "A", "colour": "red"}})
    assert "colour" in inner["message"] and inner["details"][0]["loc"] == ["colour"]
    future = await refused({**agent, "version": 2})
    assert future["details"][0]["loc"] == ["version"]
    wrong_kind = await refused(document)
    assert "this is a tool document" in wrong_kind["message"]
    unnamed = await refused({**agent, "tools": [{"steps": []}]})
    assert "needs a name" in unnamed["message"]
    no_tool = {"name": "A", "tools": [{"tool": "Nowhere"}]}
    missing = await refused({**agent, "definition": no_tool})
    assert missing["details"] == [{"kind": "tool", "name": "Nowhere", "used_by": "agent 'A'"}]

    nul = await refused('kind: agent\nversion: 1\ndefinition: {name: "A\\0"}\n', **YAML)
    assert nul["details"][0]["loc"] == ["body", "definition", "name"]
    odd_steps = {**agent, "tools": [{"name": "T", "steps": 5}]}
    assert "steps" in (await refused(odd_steps))["message"]
    bomb = await refused(ALIAS_BOMB, **YAML)
    assert "anchors and aliases" in bomb["message"]
    tagged = await refused("kind: !!python/object/apply:os.system ['true']\n", **YAML)
    assert "neither JSON nor YAML" in tagged["message"]
    huge = {**agent, "definition": {"name": "A", "params": [{"name": "p"}] * 25_000}}
    assert "values" in (await refused(huge, 413))["message"]
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    assert "deep" in (await refused(yaml.safe_dump({**agent, "x": deep}), 413, **YAML))["message"]
    too_long = await api.post(url, content=b"x" * 3_000_000, headers={**tenant.headers, **YAML})
    assert_error(too_long, 413)
    assert await names_of(api, tenant, "/agents") == []


async def test_a_read_agent_imports_as_it_is_answered(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    tools = await lookup_tools(api, tenant)
    agent = await helper_agent(api, tenant, tools, await knowledge_set(api, tenant, "faq"))
    imported = await api.post(tenant.url("/agents/import"), json=agent, headers=tenant.headers)
    assert imported.status_code == 201, imported.text
    assert imported.json()["id"] != agent["id"]
    assert definition_of(imported.json()) == definition_of(agent)
    foreign = {**definition_of(agent), "tools": [{"tool_id": "someone-elses"}]}
    refused = await api.post(tenant.url("/agents/import"), json=foreign, headers=tenant.headers)
    assert "no tool 'someone-elses'" in assert_error(refused, 422)["error"]["message"]
