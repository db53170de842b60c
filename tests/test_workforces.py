"""Workforce definitions: saved, versioned, listed and deleted per project."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Task, Workforce
from baton.domain.tasks import TaskStatus
from baton.domain.workforces import EdgeKind, WorkforceSpec
from baton.errors import NotFound
from tests.support import Tenant, assert_error, auth, create_token, items_of


def chain_spec(name: str = "Support") -> WorkforceSpec:
    return WorkforceSpec.model_validate(
        {
            "name": name,
            "nodes": [
                {"id": "triage", "type": "agent", "agent_id": "a1"},
                {"id": "reply", "type": "agent", "agent_id": "a2"},
            ],
            "edges": [{"from": "triage", "to": "reply"}],
            "entry": "triage",
        }
    )


async def test_a_saved_workforce_keeps_every_version_and_stays_in_its_project(
    session_factory: async_sessionmaker[AsyncSession], tenant: Tenant, other_tenant: Tenant
) -> None:
    async with session_factory.begin() as session:
        created = await workforce_repo.create_workforce(
            session=session, project_id=tenant.project_id, spec=chain_spec()
        )
        workforce_id = created.id
    async with session_factory.begin() as session:
        changed = chain_spec("Support v2").model_copy(update={"max_node_runs": 7})
        updated = await workforce_repo.update_workforce(
            session=session,
            project_id=tenant.project_id,
            workforce_id=workforce_id,
            spec=changed,
        )
        assert (updated.version, updated.name) == (2, "Support v2")
    async with session_factory() as session:
        row = await workforce_repo.get_workforce(
            session=session, project_id=tenant.project_id, workforce_id=workforce_id
        )
        current = workforce_repo.workforce_spec(row)
        assert current.max_node_runs == 7
        assert current.edges[0].from_ == "triage"
        assert current.edges[0].kind is EdgeKind.handover
        first = await workforce_repo.version_spec(
            session=session, workforce_id=workforce_id, version=1
        )
        assert first is not None and first.name == "Support"
        assert first.max_node_runs == 100
        assert (
            await workforce_repo.version_spec(session=session, workforce_id=workforce_id, version=3)
            is None
        )
        versions = await workforce_repo.list_versions(session=session, workforce_id=workforce_id)
        assert [v.version for v in versions.items] == [1, 2]
        listed = await workforce_repo.list_workforces(session=session, project_id=tenant.project_id)
        assert [w.id for w in listed.items] == [workforce_id]
        elsewhere = await workforce_repo.list_workforces(
            session=session, project_id=other_tenant.project_id
        )
        assert elsewhere.items == []
        with pytest.raises(NotFound):
            await workforce_repo.get_workforce(
                session=session, project_id=other_tenant.project_id, workforce_id=workforce_id
            )
    async with session_factory.begin() as session:
        await workforce_repo.delete_workforce(
            session=session, project_id=tenant.project_id, workforce_id=workforce_id
        )
    async with session_factory() as session:
        assert await session.get(Workforce, workforce_id) is None


# Through the API.


async def make_agent(api: httpx.AsyncClient, tenant: Tenant, name: str) -> str:
    body = {"name": name, "model": "scripted:echo"}
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def make_tool(api: httpx.AsyncClient, tenant: Tenant, name: str = "Lookup") -> str:
    body = {
        "name": name,
        "params": [{"name": "query", "type": "text"}],
        "steps": [{"name": "say", "type": "template", "template": "found {{ params.query }}"}],
    }
    response = await api.post(tenant.url("/tools"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    tool_id: str = response.json()["id"]
    return tool_id


async def support_body(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    """Triage delegates to billing, hands over to a lookup tool, then a condition sends the
    work to reply or to a person-facing escalation agent."""
    triage = await make_agent(api, tenant, "Triage")
    billing = await make_agent(api, tenant, "Billing")
    reply = await make_agent(api, tenant, "Reply")
    lookup = await make_tool(api, tenant)
    return {
        "name": "Support",
        "description": "Answers customers",
        "nodes": [
            {"id": "triage", "type": "agent", "agent_id": triage, "retries": 2},
            {"id": "billing", "type": "agent", "agent_id": billing},
            {
                "id": "lookup",
                "type": "tool",
                "tool_id": lookup,
                "params": {"query": "{{ input }}"},
            },
            {
                "id": "route",
                "type": "condition",
                "branches": [
                    {"to": "billing", "rules": [{"field": "", "op": "contains", "value": "$"}]}
                ],
                "default": "reply",
            },
            {"id": "reply", "type": "agent", "agent_id": reply, "on_failure": "escalate"},
        ],
        "edges": [
            {
                "from": "triage",
                "to": "billing",
                "kind": "delegate",
                "when": "a question about an invoice",
                "approval": "required",
            },
            {"from": "triage", "to": "lookup"},
            {"from": "lookup", "to": "route"},
        ],
        "entry": "triage",
        "max_node_runs": 20,
    }


async def create(api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(tenant.url("/workforces"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_workforce_is_saved_read_listed_and_each_change_is_a_new_version(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await support_body(api, tenant)
    created = await create(api, tenant, body)
    assert created["version"] == 1
    assert created["project_id"] == tenant.project_id
    assert created["edges"][0] == {**body["edges"][0], "max_auto_runs": None, "task": "new"}
    assert created["edges"][1]["kind"] == "handover"
    assert created["idle_timeout_seconds"] == 0
    assert {"created_at", "updated_at", "id"} <= set(created)
    url = tenant.url(f"/workforces/{created['id']}")

    read = await api.get(url, headers=tenant.headers)
    assert read.status_code == 200 and read.json() == created
    listed = await items_of(api, tenant.url("/workforces"), tenant.headers)
    assert [w["id"] for w in listed] == [created["id"]]

    patched = await api.patch(
        url, json={"max_node_runs": 5, "description": "v2"}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    changed = patched.json()
    assert (changed["version"], changed["max_node_runs"], changed["description"]) == (2, 5, "v2")
    assert changed["nodes"] == created["nodes"] and changed["edges"] == created["edges"]

    # Lists are replaced whole: a graph without the delegation.
    without = [e for e in body["edges"] if e.get("kind") != "delegate"]
    nodes = [n for n in body["nodes"] if n["id"] != "billing"]
    nodes[2] = {**nodes[2], "branches": [{"to": "reply", "rules": [{"op": "exists"}]}]}
    patched = await api.patch(url, json={"edges": without, "nodes": nodes}, headers=tenant.headers)
    assert patched.status_code == 200, patched.text
    assert [n["id"] for n in patched.json()["nodes"]] == ["triage", "lookup", "route", "reply"]

    versions = await items_of(api, f"{url}/versions", tenant.headers)
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[0]["spec"]["max_node_runs"] == 20
    assert versions[1]["spec"]["max_node_runs"] == 5
    assert len(versions[2]["spec"]["nodes"]) == 4
    assert (await api.get(url, headers=tenant.headers)).json()["version"] == 3


async def test_an_export_imports_into_another_project_with_the_agents_and_tools_it_runs(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = await create(api, tenant, await support_body(api, tenant))
    url = tenant.url(f"/workforces/{created['id']}/export")

    as_yaml = await api.get(url, headers=tenant.headers)
    assert as_yaml.status_code == 200, as_yaml.text
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    exported = yaml.safe_load(as_yaml.text)
    as_json = await api.get(url, params={"format": "json"}, headers=tenant.headers)
    assert as_json.status_code == 200 and as_json.json() == exported
    assert (exported["kind"], exported["version"]) == ("workforce", 1)
    assert "id" not in exported["definition"] and created["id"] not in as_json.text
    by_node = {n["id"]: n for n in exported["definition"]["nodes"]}
    assert by_node["triage"]["agent"] == "Triage" and "agent_id" not in by_node["triage"]
    assert by_node["lookup"]["tool"] == "Lookup"
    assert by_node["route"]["type"] == "condition"
    assert sorted(a["name"] for a in exported["agents"]) == ["Billing", "Reply", "Triage"]
    assert [t["name"] for t in exported["tools"]] == ["Lookup"]

    # The same project: its own agents and tool, found by name, nothing else is created.
    again = await api.post(
        tenant.url("/workforces/import"),
        content=as_yaml.text,
        headers={**tenant.headers, "Content-Type": "application/yaml"},
    )
    assert again.status_code == 201, again.text
    assert again.json()["nodes"] == created["nodes"]
    assert again.json()["id"] != created["id"]
    assert len(await items_of(api, tenant.url("/agents"), tenant.headers)) == 3

    # Another organisation with a "Triage" of its own: that one is used, the others come
    # from the document.
    their_triage = await make_agent(api, other_tenant, "Triage")
    imported = await api.post(
        other_tenant.url("/workforces/import"),
        content=as_json.content,
        headers={**other_tenant.headers, "Content-Type": "application/json"},
    )
    assert imported.status_code == 201, imported.text
    nodes = {n["id"]: n for n in imported.json()["nodes"]}
    theirs = await items_of(api, other_tenant.url("/agents"), other_tenant.headers)
    their_ids = {a["name"]: a["id"] for a in theirs}
    assert sorted(their_ids) == ["Billing", "Reply", "Triage"]
    assert nodes["triage"]["agent_id"] == their_triage
    assert nodes["billing"]["agent_id"] == their_ids["Billing"]
    assert nodes["reply"]["agent_id"] == their_ids["Reply"]
    their_tools = await items_of(api, other_tenant.url("/tools"), other_tenant.headers)
    assert [t["name"] for t in their_tools] == ["Lookup"]
    assert nodes["lookup"]["tool_id"] == their_tools[0]["id"]
    assert imported.json()["edges"] == created["edges"]


async def test_an_old_export_without_a_kind_imports_by_the_names_of_its_agents_and_tools(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = await create(api, tenant, await support_body(api, tenant))
    names = {"triage": "Triage", "billing": "Billing", "reply": "Reply"}
    old = {k: v for k, v in created.items() if k not in ("id", "project_id", "version")}
    for node in old["nodes"]:
        if node["type"] == "agent":
            node["agent_name"] = names[node["id"]]
        if node["type"] == "tool":
            node["tool_name"] = "Lookup"

    # Another organisation without those agents: the node is named, nothing is saved.
    missing = await api.post(
        other_tenant.url("/workforces/import"), json=old, headers=other_tenant.headers
    )
    error = assert_error(missing, 422, "invalid_input")["error"]
    assert "'triage'" in error["message"] and "Triage" in error["message"]
    assert error["details"][0]["field"] == "nodes[0].agent_id"
    assert await items_of(api, other_tenant.url("/workforces"), other_tenant.headers) == []

    theirs = {name: await make_agent(api, other_tenant, name) for name in names.values()}
    their_tool = await make_tool(api, other_tenant)
    imported = await api.post(
        other_tenant.url("/workforces/import"), json=old, headers=other_tenant.headers
    )
    assert imported.status_code == 201, imported.text
    nodes = {n["id"]: n for n in imported.json()["nodes"]}
    assert nodes["triage"]["agent_id"] == theirs["Triage"]
    assert nodes["lookup"]["tool_id"] == their_tool


async def test_an_import_refuses_what_it_cannot_resolve(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    await make_agent(api, tenant, "Twin")
    await make_agent(api, tenant, "Twin")
    doc = (
        "name: Imported\n"
        "entry: a\n"
        "nodes:\n"
        "  - {id: a, type: agent, agent_id: gone, agent_name: Twin}\n"
    )
    headers = {**tenant.headers, "Content-Type": "application/yaml"}
    url = tenant.url("/workforces/import")
    twins = assert_error(await api.post(url, content=doc, headers=headers), 422)["error"]
    assert "2 agents are named 'Twin'" in twins["message"]
    no_name = doc.replace(", agent_name: Twin", "")
    unknown = assert_error(await api.post(url, content=no_name, headers=headers), 422)["error"]
    assert unknown["message"] == "node 'a': no agent 'gone' in this project"
    no_tool = "name: T\nentry: t\nnodes:\n  - {id: t, type: tool, tool_id: x, tool_name: Nope}\n"
    tool = assert_error(await api.post(url, content=no_tool, headers=headers), 422)["error"]
    assert tool["details"][0]["field"] == "nodes[0].tool_id"
    for bad in ("- just a list\n", "name: [unclosed\n"):
        assert_error(await api.post(url, content=bad, headers=headers), 422)
    invalid = "name: X\nentry: a\nnodes:\n  - {id: a, type: robot}\n"
    error = assert_error(await api.post(url, content=invalid, headers=headers), 422)["error"]
    assert [d["field"] for d in error["details"]] == ["nodes[0]"]


async def test_a_clone_is_a_new_workforce_named_as_a_copy(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(api, tenant, await support_body(api, tenant))
    url = tenant.url(f"/workforces/{created['id']}")
    await api.patch(url, json={"max_node_runs": 9}, headers=tenant.headers)
    cloned = await api.post(f"{url}/clone", headers=tenant.headers)
    assert cloned.status_code == 201, cloned.text
    copy = cloned.json()
    assert copy["id"] != created["id"]
    assert (copy["name"], copy["version"], copy["max_node_runs"]) == ("Support (copy)", 1, 9)
    assert copy["nodes"] == created["nodes"]
    long = await api.patch(url, json={"name": "n" * 200}, headers=tenant.headers)
    assert long.status_code == 200, long.text
    again = await api.post(f"{url}/clone", headers=tenant.headers)
    assert again.status_code == 201, again.text
    assert again.json()["name"] == "n" * 193 + " (copy)"


async def test_a_workforce_is_deleted_unless_one_of_its_tasks_is_still_going(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    created = await create(api, tenant, await support_body(api, tenant))
    url = tenant.url(f"/workforces/{created['id']}")
    async with session_factory.begin() as session:
        task = Task(
            project_id=tenant.project_id,
            kind="workforce-task",
            workforce_id=created["id"],
            workforce_version=1,
            workflow_id=f"workforce-task-{uuid.uuid4()}",
            status=TaskStatus.running.value,
        )
        session.add(task)
    assert_error(await api.delete(url, headers=tenant.headers), 409, "conflict")
    assert (await api.get(url, headers=tenant.headers)).status_code == 200
    async with session_factory.begin() as session:
        row = await session.get(Task, task.id)
        assert row is not None
        row.status = TaskStatus.completed.value
    deleted = await api.delete(url, headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text
    assert_error(await api.get(url, headers=tenant.headers), 404, "not_found")
    assert_error(await api.delete(url, headers=tenant.headers), 404, "not_found")


async def refused(api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str) -> str:
    """A save refused with a 422 naming `field`; its message."""
    response = await api.post(tenant.url("/workforces"), json=body, headers=tenant.headers)
    error = assert_error(response, 422, "invalid_input")["error"]
    assert field in [d.get("field") for d in error["details"]], error
    message: str = error["message"]
    return message


async def test_saving_refuses_a_definition_that_cannot_run_naming_the_field(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await support_body(api, tenant)
    nodes = body["nodes"]

    def with_node(index: int, **change: Any) -> dict[str, Any]:
        return {**body, "nodes": [*nodes[:index], {**nodes[index], **change}, *nodes[index + 1 :]]}

    message = await refused(api, tenant, with_node(1, agent_id="nope"), "nodes[1].agent_id")
    assert message == "node 'billing': no agent 'nope' in this project"
    message = await refused(api, tenant, with_node(2, tool_id="nope"), "nodes[2].tool_id")
    assert message == "node 'lookup': no tool 'nope' in this project"
    message = await refused(
        api, tenant, with_node(2, params={"query": "x", "limit": 3}), "nodes[2].params.limit"
    )
    assert "has no param 'limit' (its params: query)" in message
    message = await refused(
        api, tenant, with_node(2, params={"query": "{{ secrets.key }}"}), "nodes[2].params.query"
    )
    assert "reads a secret" in message
    await refused(
        api, tenant, with_node(2, params={"query": "{{ steps.a }}"}), "nodes[2].params.query"
    )
    await refused(api, tenant, with_node(2, params={"query": "{{ input"}), "nodes[2].params.query")
    model = {"mode": "model", "model": "nosuch:model", "prompt": "pick"}
    await refused(api, tenant, with_node(3, **model), "nodes[3].model")
    model = {"mode": "model", "model": "scripted:no-such-script", "prompt": "pick"}
    await refused(api, tenant, with_node(3, **model), "nodes[3].model")
    message = await refused(api, tenant, with_node(3, mode="model"), "nodes[3].model")
    assert message == "condition 'route' needs a model"
    await refused(api, tenant, with_node(3, default=None), "nodes[3].default")
    unreachable = {**body, "edges": body["edges"][:2]}
    message = await refused(api, tenant, unreachable, "nodes[3]")
    assert message == "node 'route' cannot be reached from the entry"
    await refused(api, tenant, {**body, "entry": "nowhere"}, "entry")
    await refused(api, tenant, {**body, "max_node_runs": 0}, "max_node_runs")
    await refused(
        api, tenant, {**body, "nodes": [*nodes, {"id": "x", "type": "robot"}]}, "nodes[5]"
    )
    await refused(api, tenant, {**body, "surprise": 1}, "surprise")
    assert await items_of(api, tenant.url("/workforces"), tenant.headers) == []

    created = await create(api, tenant, body)
    url = tenant.url(f"/workforces/{created['id']}")
    bad_patch = await api.patch(url, json={"entry": "reply"}, headers=tenant.headers)
    assert_error(bad_patch, 422, "invalid_input")
    assert_error(await api.patch(url, json={"nodes": None}, headers=tenant.headers), 422)
    assert (await api.get(url, headers=tenant.headers)).json()["version"] == 1


async def test_a_viewer_reads_workforces_and_cannot_change_them(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await support_body(api, tenant)
    created = await create(api, tenant, body)
    viewer = auth((await create_token(api, tenant.headers, role="viewer"))["token"])
    url = tenant.url(f"/workforces/{created['id']}")
    assert (await api.get(url, headers=viewer)).status_code == 200
    assert (await api.get(f"{url}/versions", headers=viewer)).status_code == 200
    assert (await api.get(f"{url}/export", headers=viewer)).status_code == 200
    assert (await api.get(tenant.url("/workforces"), headers=viewer)).status_code == 200
    writes = [
        api.post(tenant.url("/workforces"), json=body, headers=viewer),
        api.post(tenant.url("/workforces/import"), json=body, headers=viewer),
        api.patch(url, json={"name": "x"}, headers=viewer),
        api.post(f"{url}/clone", headers=viewer),
        api.delete(url, headers=viewer),
    ]
    for write in writes:
        assert_error(await write, 403, "permission_denied")
    assert len(await items_of(api, tenant.url("/workforces"), tenant.headers)) == 1
    assert (await api.get(url, headers=tenant.headers)).json()["version"] == 1


async def test_another_organisation_neither_sees_a_workforce_nor_uses_its_agents(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    body = await support_body(api, tenant)
    created = await create(api, tenant, body)
    theirs = other_tenant.headers
    # Through the other organisation's own project: the id is unknown there.
    url = other_tenant.url(f"/workforces/{created['id']}")
    for request in (
        api.get(url, headers=theirs),
        api.patch(url, json={"name": "x"}, headers=theirs),
        api.delete(url, headers=theirs),
        api.get(f"{url}/versions", headers=theirs),
        api.get(f"{url}/export", headers=theirs),
        api.post(f"{url}/clone", headers=theirs),
    ):
        assert_error(await request, 404, "not_found")
    # Through the owner's project: the project itself is not theirs.
    assert_error(await api.get(tenant.url(f"/workforces/{created['id']}"), headers=theirs), 404)
    assert_error(await api.get(tenant.url("/workforces"), headers=theirs), 404)
    # Saving a graph with the owner's agents in their own project: unknown agents, unnamed.
    response = await api.post(other_tenant.url("/workforces"), json=body, headers=theirs)
    error = assert_error(response, 422, "invalid_input")["error"]
    agent_id = body["nodes"][0]["agent_id"]
    assert error["message"] == f"node 'triage': no agent {agent_id!r} in this project"
    assert "Triage" not in response.text
    assert (
        await api.get(tenant.url(f"/workforces/{created['id']}"), headers=tenant.headers)
    ).json()["version"] == 1


async def test_a_read_workforce_imports_as_it_is_answered(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(api, tenant, await support_body(api, tenant))
    imported = await api.post(
        tenant.url("/workforces/import"), json=created, headers=tenant.headers
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["nodes"] == created["nodes"]
    assert imported.json()["version"] == 1 and imported.json()["id"] != created["id"]


async def test_an_agent_or_tool_a_workforce_runs_is_not_deleted_under_it(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await support_body(api, tenant)
    created = await create(api, tenant, body)
    reply_id = body["nodes"][4]["agent_id"]
    lookup_id = body["nodes"][2]["tool_id"]
    agent = await api.delete(tenant.url(f"/agents/{reply_id}"), headers=tenant.headers)
    error = assert_error(agent, 409, "conflict")["error"]
    assert error["message"] == "agent 'Reply' is a node of workforce 'Support'; change those first"
    assert error["details"] == {"used_by": ["workforce 'Support'"]}
    tool = await api.delete(tenant.url(f"/tools/{lookup_id}"), headers=tenant.headers)
    error = assert_error(tool, 409, "conflict")["error"]
    assert error["message"] == "tool 'Lookup' is a node of workforce 'Support'; change those first"

    # Once the workforce no longer runs them, they go.
    url = tenant.url(f"/workforces/{created['id']}")
    assert (await api.delete(url, headers=tenant.headers)).status_code == 204
    assert (
        await api.delete(tenant.url(f"/agents/{reply_id}"), headers=tenant.headers)
    ).status_code == 204
    assert (
        await api.delete(tenant.url(f"/tools/{lookup_id}"), headers=tenant.headers)
    ).status_code == 204
    assert_error(await api.delete(tenant.url(f"/tools/{lookup_id}"), headers=tenant.headers), 404)


async def test_a_definition_far_larger_than_any_real_one_is_refused_before_it_is_read(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    huge = {"name": "Huge", "entry": "a", "nodes": [{"id": "a"}], "edges": [{}] * 25_000}
    for url in (tenant.url("/workforces"), tenant.url("/workforces/import")):
        response = await api.post(url, json=huge, headers=tenant.headers)
        assert_error(response, 413, "definition_too_large")
    aliased = "name: &n W\nentry: a\nnodes:\n  - {id: a, type: agent, agent_id: *n}\n"
    response = await api.post(
        tenant.url("/workforces/import"),
        content=aliased,
        headers={**tenant.headers, "Content-Type": "application/yaml"},
    )
    assert "anchors and aliases" in assert_error(response, 422)["error"]["message"]
