"""Workforce tasks: a task flows through a graph of agents, tools and conditions, each node a
child workflow of its own; through the API, the real Temporal server and a real worker, on
the offline scripted models."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.domain.models import SCRIPTED_LABEL
from baton.settings import Settings
from tests.support import Tenant, api_client, assert_error, worker_on
from tests.support.factories import make_agent, make_tool, task_in
from tests.test_task_events import read_stream

FINAL = {"completed", "failed", "cancelled", "timed-out", "execution-limit-reached"}


async def echo_agent(api: httpx.AsyncClient, tenant: Tenant, name: str, **spec: Any) -> str:
    return await make_agent(api, tenant, tools=[], model="scripted:echo", name=name, **spec)


async def make_workforce(api: httpx.AsyncClient, tenant: Tenant, **spec: Any) -> str:
    response = await api.post(
        tenant.url("/workforces"), json={"name": "Support", **spec}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    workforce_id: str = response.json()["id"]
    return workforce_id


async def start(
    api: httpx.AsyncClient, tenant: Tenant, workforce_id: str, message: str, **extra: Any
) -> dict[str, Any]:
    response = await api.post(
        tenant.url(f"/workforces/{workforce_id}/tasks"),
        json={"message": message, **extra},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def said(text: str) -> str:
    return f"{SCRIPTED_LABEL} You said: {text}"


def chain(*node_ids: str) -> list[dict[str, str]]:
    return [{"from": a, "to": b, "kind": "handover"} for a, b in itertools.pairwise(node_ids)]


async def echo_workforce(
    api: httpx.AsyncClient,
    tenant: Tenant,
    *node_ids: str,
    edges: list[dict[str, str]] | None = None,
    **spec: Any,
) -> tuple[str, dict[str, str]]:
    """A workforce of agent nodes whose agents echo, each named for its node; the entry is
    the first, and the work goes on in this order unless `edges` says otherwise. The
    workforce and each node's agent."""
    agents = {node: await echo_agent(api, tenant, node.title()) for node in node_ids}
    workforce = await make_workforce(
        api,
        tenant,
        nodes=[{"id": n, "type": "agent", "agent_id": a} for n, a in agents.items()],
        edges=chain(*node_ids) if edges is None else edges,
        entry=node_ids[0],
        **spec,
    )
    return workforce, agents


async def test_three_agents_hand_the_work_on_and_each_answer_names_its_node(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    workforce, agents = await echo_workforce(api, tenant, "triage", "billing", "reply")
    created = await start(api, tenant, workforce, "refund order 7")
    assert created["workflow_id"] == f"workforce-task-{created['id']}"
    assert created["temporal_ui_url"].endswith(created["workflow_id"])

    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]
    assert (task["kind"], task["workforce_id"], task["agent_id"]) == (
        "workforce-task",
        workforce,
        None,
    )
    triage = said("refund order 7")
    billing = said(f"refund order 7\n\nHanded over by triage:\n{triage}")
    reply = said(f"refund order 7\n\nHanded over by billing:\n{billing}")
    shown = [
        (m["type"], m["role"], m.get("author"), m.get("from"), m.get("to"))
        for m in task["messages"]
    ]
    assert shown == [
        ("message", "user", None, None, None),
        ("message", "assistant", "triage", None, None),
        ("handover", "handover", None, "triage", "billing"),
        ("message", "assistant", "billing", None, None),
        ("handover", "handover", None, "billing", "reply"),
        ("message", "assistant", "reply", None, None),
    ]
    assert [m["content"] for m in task["messages"]] == [
        "refund order 7",
        triage,
        triage,
        billing,
        billing,
        reply,
    ]

    nodes = task["nodes"]
    assert [(n["run"], n["node"], n["type"], n["status"]) for n in nodes] == [
        (1, "triage", "agent", "completed"),
        (2, "billing", "agent", "completed"),
        (3, "reply", "agent", "completed"),
    ]
    # Each node ran as a task of its own, a child of the workforce task in Temporal.
    for node in nodes:
        child = await api.get(tenant.url(f"/tasks/{node['task_id']}"), headers=tenant.headers)
        assert child.status_code == 200, child.text
        body = child.json()
        assert (body["parent_task_id"], body["node"], body["agent_id"]) == (
            created["id"],
            node["node"],
            agents[node["node"]],
        )
        assert body["status"] == "completed"
        described = await temporal_env.client.get_workflow_handle(body["workflow_id"]).describe()
        assert described.parent_id == created["workflow_id"]
        summary = await described.static_summary()
        assert summary == f"node {node['node']}: agent {node['node'].title()}"

    listed = await api.get(
        tenant.url("/tasks"), params={"workforce_id": workforce}, headers=tenant.headers
    )
    assert [(t["id"], t["kind"]) for t in listed.json()["items"]] == [
        (created["id"], "workforce-task")
    ]
    query = f"BatonWorkforce = '{workforce}' AND BatonKind = 'workforce-task'"
    found = [run.id async for run in temporal_env.client.list_workflows(query)]
    assert found == [created["workflow_id"]]


async def test_the_workforce_task_streams_its_nodes_events_tagged_with_their_node(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
):
    workforce, _ = await echo_workforce(api, tenant, "first", "second")
    created = await start(api, tenant, workforce, "hello")
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]

    events = await read_stream(api, tenant.url(f"/tasks/{created['id']}/events"), tenant.headers)
    datas = [(event["event"], json.loads(event["data"])["data"]) for event in events]
    children = {n["node"]: n["task_id"] for n in task["nodes"]}
    for node, child_id in children.items():
        theirs = [d for _, d in datas if d.get("task_id") == child_id]
        assert theirs and all(d["node"] == node for d in theirs)
        # The node's answer streamed into the workforce task's log as it came.
        assert any(kind == "message.delta" and d.get("task_id") == child_id for kind, d in datas)
    own = [kind for kind, d in datas if "task_id" not in d]
    assert own.count("node.started") == 2 and own.count("node.completed") == 2
    assert [event["id"] for event in events] == [str(n) for n in range(1, len(events) + 1)]
    assert json.loads(events[-1]["data"])["data"] == {"status": "completed"}


async def test_a_tool_node_runs_the_tool_on_what_the_agent_before_it_said(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    tool = await make_tool(api, tenant, name="Lookup")
    triage, reply = await echo_agent(api, tenant, "Triage"), await echo_agent(api, tenant, "Reply")
    workforce = await make_workforce(
        api,
        tenant,
        nodes=[
            {"id": "triage", "type": "agent", "agent_id": triage},
            {
                "id": "lookup",
                "type": "tool",
                "tool_id": tool,
                "params": {"text": "{{ params.customer }} asked {{ message }}"},
            },
            {"id": "reply", "type": "agent", "agent_id": reply},
        ],
        edges=chain("triage", "lookup", "reply"),
        entry="triage",
    )
    created = await start(api, tenant, workforce, "order 9?", params={"customer": "Ada"})
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]

    lookup = task["nodes"][1]
    assert (lookup["node"], lookup["type"], lookup["status"]) == ("lookup", "tool", "completed")
    assert lookup["output"] == "tool got Ada asked order 9?"
    run = await api.get(tenant.url(f"/tool-runs/{lookup['run_id']}"), headers=tenant.headers)
    assert run.status_code == 200, run.text
    assert (run.json()["status"], run.json()["params"]) == (
        "succeeded",
        {"text": "Ada asked order 9?"},
    )
    described = await temporal_env.client.get_workflow_handle(
        f"tool-run-{lookup['run_id']}"
    ).describe()
    assert described.parent_id == created["workflow_id"]
    assert await described.static_summary() == "node lookup: tool Lookup"
    # The tool's output is what the next agent was handed.
    handover = task["messages"][2]
    assert (handover["type"], handover["from"], handover["to"]) == ("handover", "lookup", "reply")
    assert handover["content"] == "tool got Ada asked order 9?"
    assert task["messages"][-1]["content"] == said(
        "order 9?\n\nHanded over by lookup:\ntool got Ada asked order 9?"
    )


async def routing_workforce(api: httpx.AsyncClient, tenant: Tenant, **route: Any) -> str:
    """A condition node `route` (with these settings) before two agents that echo, `billing`
    and `reply`, which is its default."""
    agents = {node: await echo_agent(api, tenant, node.title()) for node in ("billing", "reply")}
    return await make_workforce(
        api,
        tenant,
        nodes=[
            {"id": "route", "type": "condition", "default": "reply", **route},
            *({"id": n, "type": "agent", "agent_id": a} for n, a in agents.items()),
        ],
        entry="route",
    )


async def test_a_rule_condition_sends_two_messages_two_ways(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
):
    workforce = await routing_workforce(
        api, tenant, branches=[{"to": "billing", "rules": [{"op": "contains", "value": "refund"}]}]
    )
    refund = await start(api, tenant, workforce, "I want a REFUND")
    hello = await start(api, tenant, workforce, "hello there")

    refunded = await task_in(api, tenant, refund["id"], FINAL)
    greeted = await task_in(api, tenant, hello["id"], FINAL)
    assert [(n["node"], n.get("branch")) for n in refunded["nodes"]] == [
        ("route", "billing"),
        ("billing", None),
    ]
    assert [(n["node"], n.get("branch")) for n in greeted["nodes"]] == [
        ("route", "reply"),
        ("reply", None),
    ]
    # A condition only routes: the agent after it reads the user's message itself.
    assert greeted["messages"][-1] == {
        "type": "message",
        "role": "assistant",
        "content": said("hello there"),
        "author": "reply",
        "from": None,
        "to": None,
        "task_id": None,
    }


async def test_a_model_condition_takes_the_branch_whose_label_the_model_names(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    workforce = await routing_workforce(
        api,
        tenant,
        mode="model",
        # The scripted model echoes the message: it names the label the message names.
        model="scripted:echo",
        prompt="Which team should take this message?",
        branches=[{"to": "billing", "label": "invoices"}],
    )
    invoice = await start(api, tenant, workforce, "two invoices are wrong")
    other = await start(api, tenant, workforce, "where is my parcel")

    routed = await task_in(api, tenant, invoice["id"], FINAL)
    defaulted = await task_in(api, tenant, other["id"], FINAL)
    assert [n["node"] for n in routed["nodes"]] == ["route", "billing"]
    assert [n["node"] for n in defaulted["nodes"]] == ["route", "reply"]


async def test_a_looping_graph_ends_at_its_cap_of_node_runs(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    workforce, _ = await echo_workforce(
        api, tenant, "ping", "pong", edges=chain("ping", "pong", "ping"), max_node_runs=4
    )
    created = await start(api, tenant, workforce, "go")
    task = await task_in(api, tenant, created["id"], FINAL)

    assert task["status"] == "execution-limit-reached"
    assert "max_node_runs" in task["error"]
    assert [n["node"] for n in task["nodes"]] == ["ping", "pong", "ping", "pong"]
    # The row is written before the run fails: wait for the run's end, then read its status.
    handle = temporal_env.client.get_workflow_handle(created["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    refused = await api.post(
        tenant.url(f"/tasks/{created['id']}/messages"),
        json={"message": "more"},
        headers=tenant.headers,
    )
    assert_error(refused, 409)


async def fragile_workforce(api: httpx.AsyncClient, tenant: Tenant, **node: Any) -> str:
    """One node, `fragile` (with these settings), whose agent fails on a message that makes
    it call a tool: with one model call per turn, it is left without an answer."""
    tool = await make_tool(api, tenant)
    fragile = await make_agent(api, tenant, tools=[{"tool_id": tool}], max_iterations=1)
    return await make_workforce(
        api,
        tenant,
        nodes=[{"id": "fragile", "type": "agent", "agent_id": fragile, **node}],
        entry="fragile",
    )


async def test_a_failing_node_escalates_and_a_persons_message_runs_it_again(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
):
    workforce = await fragile_workforce(api, tenant, retries=1, on_failure="escalate")
    created = await start(api, tenant, workforce, 'call echo_tool {"text": "x"}')
    escalated = await task_in(api, tenant, created["id"], {"escalated"} | FINAL)
    assert escalated["status"] == "escalated"
    assert "max_iterations" in escalated["error"]
    assert [(n["node"], n["status"]) for n in escalated["nodes"]] == [
        ("fragile", "failed"),
        ("fragile", "failed"),
    ]

    sent = await api.post(
        tenant.url(f"/tasks/{created['id']}/messages"),
        json={"message": "just say hi"},
        headers=tenant.headers,
    )
    assert sent.status_code == 202, sent.text
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]
    assert task["error"] is None
    assert [(n["node"], n["status"]) for n in task["nodes"]][-1] == ("fragile", "completed")
    assert [(m["role"], m["content"]) for m in task["messages"]] == [
        ("user", 'call echo_tool {"text": "x"}'),
        ("user", "just say hi"),
        ("assistant", said("just say hi")),
    ]


async def test_a_failing_node_that_terminates_fails_the_task(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    workforce = await fragile_workforce(api, tenant)
    created = await start(api, tenant, workforce, "call echo_tool")
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "failed"
    assert task["error"].startswith("node 'fragile' failed:")
    # The row is written before the run fails: wait for the run's end, then read its status.
    handle = temporal_env.client.get_workflow_handle(created["workflow_id"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


async def waiting_for_approval(
    api: httpx.AsyncClient, tenant: Tenant, message: str
) -> tuple[str, dict[str, Any]]:
    """A task of a one-node workforce whose agent's tool needs approval, started with
    `message` and read once it waits for one: its URL and its body."""
    tool = await make_tool(api, tenant)
    careful = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    workforce = await make_workforce(
        api,
        tenant,
        nodes=[{"id": "careful", "type": "agent", "agent_id": careful}],
        entry="careful",
    )
    created = await start(api, tenant, workforce, message)
    url = tenant.url(f"/tasks/{created['id']}")
    async with asyncio.timeout(30):
        while not (task := (await api.get(url, headers=tenant.headers)).json())[
            "pending_approvals"
        ]:
            await asyncio.sleep(0.1)
    return url, task


async def test_a_nodes_approval_is_decided_through_the_workforce_task(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
):
    url, task = await waiting_for_approval(api, tenant, 'call echo_tool {"text": "ok"}')
    [pending] = task["pending_approvals"]
    assert pending["tool"] == "echo_tool"
    unknown = await api.post(
        f"{url}/approvals/nope", json={"approve": True}, headers=tenant.headers
    )
    assert_error(unknown, 404)

    decided = await api.post(
        f"{url}/approvals/{pending['call_id']}", json={"approve": True}, headers=tenant.headers
    )
    assert decided.status_code == 200, decided.text
    done = await task_in(api, tenant, task["id"], FINAL)
    assert done["status"] == "completed", done["error"]
    assert done["pending_approvals"] == []
    assert "echo_tool: tool got ok" in done["messages"][-1]["content"]


async def test_cancelling_a_workforce_task_cancels_the_node_at_work(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
):
    url, waiting = await waiting_for_approval(api, tenant, "call echo_tool")

    cancelled = await api.post(f"{url}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 202, cancelled.text
    task = await task_in(api, tenant, waiting["id"], FINAL)
    assert task["status"] == "cancelled"
    [node] = task["nodes"]
    child = await task_in(api, tenant, node["task_id"], FINAL)
    assert child["status"] == "cancelled"


async def idle_task(
    api: httpx.AsyncClient, tenant: Tenant, message: str
) -> tuple[str, str, dict[str, Any]]:
    """A task of a one-node workforce (its agent echoes) that waits an hour for a follow-up,
    started with `message` and read once it waits (or has ended): the workforce, its agent
    and the task."""
    workforce, agents = await echo_workforce(api, tenant, "helper", idle_timeout_seconds=3600)
    created = await start(api, tenant, workforce, message)
    return workforce, agents["helper"], await task_in(api, tenant, created["id"], {"idle"} | FINAL)


async def test_a_finished_graph_waits_for_a_follow_up_and_starts_again_at_the_entry(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
):
    workforce, helper, created = await idle_task(api, tenant, "first")
    assert created["status"] == "idle"
    # A new version of the workforce: the task keeps the one it started with.
    other = await echo_agent(api, tenant, "Other")
    patched = await api.patch(
        tenant.url(f"/workforces/{workforce}"),
        json={"nodes": [{"id": "helper", "type": "agent", "agent_id": other}]},
        headers=tenant.headers,
    )
    assert patched.status_code == 200, patched.text
    sent = await api.post(
        tenant.url(f"/tasks/{created['id']}/messages"),
        json={"message": "second"},
        headers=tenant.headers,
    )
    assert sent.status_code == 202, sent.text
    async with asyncio.timeout(30):
        while len((task := await task_in(api, tenant, created["id"], {"idle"}))["nodes"]) < 2:
            await asyncio.sleep(0.1)
    assert [(m["role"], m["content"]) for m in task["messages"]] == [
        ("user", "first"),
        ("assistant", said("first")),
        ("user", "second"),
        ("assistant", said("second")),
    ]
    second = await api.get(
        tenant.url(f"/tasks/{task['nodes'][1]['task_id']}"), headers=tenant.headers
    )
    assert second.json()["agent_id"] == helper
    assert task["workforce_version"] == 1

    # A workforce with a task that has not ended stays.
    deleted = await api.delete(tenant.url(f"/workforces/{workforce}"), headers=tenant.headers)
    assert_error(deleted, 409)
    await api.post(tenant.url(f"/tasks/{created['id']}/cancel"), headers=tenant.headers)
    assert (await task_in(api, tenant, created["id"], FINAL))["status"] == "cancelled"
    deleted = await api.delete(tenant.url(f"/workforces/{workforce}"), headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text


async def test_another_tenant_reaches_neither_the_workforce_nor_its_tasks(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    worker: Worker,
):
    workforce, _, created = await idle_task(api, tenant, "mine")
    [node] = created["nodes"]

    theirs = other_tenant.headers
    for task_id in (created["id"], node["task_id"]):
        assert_error(await api.get(other_tenant.url(f"/tasks/{task_id}"), headers=theirs), 404)
        events = other_tenant.url(f"/tasks/{task_id}/events")
        assert_error(await api.get(events, headers=theirs), 404)
        message = other_tenant.url(f"/tasks/{task_id}/messages")
        assert_error(await api.post(message, json={"message": "x"}, headers=theirs), 404)
        cancel = other_tenant.url(f"/tasks/{task_id}/cancel")
        assert_error(await api.post(cancel, headers=theirs), 404)
        approval = other_tenant.url(f"/tasks/{task_id}/approvals/scripted-0-0")
        assert_error(await api.post(approval, json={"approve": True}, headers=theirs), 404)
    # Through its own project's URL too: the workforce is not theirs.
    started = await api.post(
        other_tenant.url(f"/workforces/{workforce}/tasks"), json={"message": "x"}, headers=theirs
    )
    assert_error(started, 404)
    # Nor by naming the other project with their own token.
    assert_error(await api.get(tenant.url(f"/tasks/{created['id']}"), headers=theirs), 404)
    listed = await api.get(other_tenant.url("/tasks"), headers=theirs)
    assert listed.json()["items"] == []
    await api.post(tenant.url(f"/tasks/{created['id']}/cancel"), headers=tenant.headers)
    assert (await task_in(api, tenant, created["id"], FINAL))["status"] == "cancelled"


async def test_the_tours_workforce_triage_delegates_to_billing_and_hands_over_to_reply(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    """The README's tour, as its curl commands run it."""
    triage = await make_agent(api, tenant, tools=[], name="Triage", model="scripted:tools")
    billing = await echo_agent(api, tenant, "Billing")
    reply = await echo_agent(api, tenant, "Reply")
    workforce = await make_workforce(
        api,
        tenant,
        nodes=[
            {"id": "triage", "type": "agent", "agent_id": triage},
            {"id": "billing", "type": "agent", "agent_id": billing},
            {"id": "reply", "type": "agent", "agent_id": reply},
        ],
        edges=[
            {"from": "triage", "to": "billing", "kind": "delegate", "when": "a billing question"},
            {"from": "triage", "to": "reply", "kind": "handover"},
        ],
        entry="triage",
    )
    created = await start(api, tenant, workforce, 'call ask_billing {"message": "refund order 7"}')
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]

    triage_answer = next(m for m in task["messages"] if m.get("author") == "triage")
    assert f"ask_billing: {said('refund order 7')}" in triage_answer["content"]
    assert [m.get("author") for m in task["messages"] if m["role"] == "assistant"] == [
        "triage",
        "reply",
    ]
    assert [n["node"] for n in task["nodes"]] == ["triage", "reply"]
    # The delegation is a task of its own, working for triage's, and its events are in the
    # workforce task's log, tagged with its node.
    listed = await api.get(
        tenant.url("/tasks"), params={"agent_id": billing}, headers=tenant.headers
    )
    [delegated] = listed.json()["items"]
    assert (delegated["node"], delegated["parent_task_id"]) == (
        "billing",
        task["nodes"][0]["task_id"],
    )
    events = await read_stream(api, tenant.url(f"/tasks/{created['id']}/events"), tenant.headers)
    tagged = [json.loads(e["data"])["data"] for e in events]
    assert any(d.get("task_id") == delegated["id"] and d["node"] == "billing" for d in tagged)


async def delegating_desk(
    api: httpx.AsyncClient, tenant: Tenant, triage_tools: list[dict[str, Any]] | None = None
) -> str:
    """Triage may ask Billing, which may ask Ledger; then triage hands over to Reply. Triage
    and Billing call the tools their message names, Ledger and Reply echo."""
    agents = {
        "triage": await make_agent(api, tenant, tools=triage_tools or [], name="Triage"),
        "billing": await make_agent(api, tenant, tools=[], name="Billing"),
        "ledger": await echo_agent(api, tenant, "Ledger"),
        "reply": await echo_agent(api, tenant, "Reply"),
    }
    return await make_workforce(
        api,
        tenant,
        nodes=[{"id": n, "type": "agent", "agent_id": a} for n, a in agents.items()],
        edges=[
            {"from": "triage", "to": "billing", "kind": "delegate"},
            {"from": "billing", "to": "ledger", "kind": "delegate"},
            *chain("triage", "reply"),
        ],
        entry="triage",
    )


async def test_each_delegation_is_a_message_of_its_own_before_the_callers_answer(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    workforce = await delegating_desk(api, tenant)
    inner = 'call ask_ledger {"message": "book it"}'
    message = "call ask_billing " + json.dumps({"message": inner})
    created = await start(api, tenant, workforce, message)
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]

    shown = [
        (m["type"], m.get("author"), m.get("from"), m.get("to"), m["content"])
        for m in task["messages"]
    ]
    triage_answer = task["messages"][3]["content"]
    assert shown == [
        ("message", None, None, None, message),
        ("delegation", None, "triage", "billing", inner),
        # Billing's own delegation, made while it worked for triage.
        ("delegation", None, "billing", "ledger", "book it"),
        ("message", "triage", None, None, triage_answer),
        ("handover", None, "triage", "reply", triage_answer),
        (
            "message",
            "reply",
            None,
            None,
            said(f"{message}\n\nHanded over by triage:\n{triage_answer}"),
        ),
    ]
    # The ledger's answer came back through billing's to triage's.
    assert f"ask_ledger: {said('book it')}" in triage_answer
    # Each delegation names the task the asked node worked in, a child of the asker's.
    billing_id, ledger_id = (m["task_id"] for m in task["messages"][1:3])
    billing = await task_in(api, tenant, billing_id, FINAL)
    ledger = await task_in(api, tenant, ledger_id, FINAL)
    assert (billing["node"], billing["parent_task_id"]) == ("billing", task["nodes"][0]["task_id"])
    assert (ledger["node"], ledger["parent_task_id"]) == ("ledger", billing_id)
    assert ledger["messages"][-1]["content"] == said("book it")
    assert all(m.get("task_id") is None for m in task["messages"] if m["type"] != "delegation")


async def test_every_run_under_a_workforce_task_is_found_by_its_workforce_in_temporal(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    tool = await make_tool(api, tenant)
    workforce = await delegating_desk(api, tenant, triage_tools=[{"tool_id": tool}])
    created = await start(
        api, tenant, workforce, 'call echo_tool {"text": "ok"}\ncall ask_billing {"message": "hi"}'
    )
    task = await task_in(api, tenant, created["id"], FINAL)
    assert task["status"] == "completed", task["error"]

    [delegation] = [m for m in task["messages"] if m["type"] == "delegation"]
    events = await read_stream(api, tenant.url(f"/tasks/{created['id']}/events"), tenant.headers)
    datas = [(e["event"], json.loads(e["data"])["data"]) for e in events]
    [run_id] = [d["run_id"] for kind, d in datas if kind == "tool.run.started" and "run_id" in d]
    tree = {
        (created["workflow_id"], "WorkforceWorkflow"),
        *((f"task-{n['task_id']}", "AgentTaskWorkflow") for n in task["nodes"]),
        (f"task-{delegation['task_id']}", "AgentTaskWorkflow"),
        (f"tool-run-{run_id}", "ToolRunWorkflow"),
    }
    assert len(tree) == 5
    # Visibility is eventually consistent: wait until the query shows the whole tree.
    query = f"BatonWorkforce = '{workforce}'"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        found = {(w.id, w.workflow_type) async for w in temporal_env.client.list_workflows(query)}
        if found == tree or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert found == tree


async def test_a_long_workforce_conversation_continues_as_new_and_loses_nothing(
    eager_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    """On a dev server that suggests continue-as-new after 100 history events."""
    async with (
        worker_on(eager_env.client, settings, session_factory),
        api_client(settings, eager_env.client) as api,
    ):
        await converse(api, tenant, eager_env)


async def converse(api: httpx.AsyncClient, tenant: Tenant, env: WorkflowEnvironment) -> None:
    workforce, _ = await echo_workforce(api, tenant, "helper", idle_timeout_seconds=3600)
    created = await start(api, tenant, workforce, "turn 0")
    messages = tenant.url(f"/tasks/{created['id']}/messages")
    handle = env.client.get_workflow_handle(created["workflow_id"])
    first_run = (await handle.describe()).run_id

    async def answered(turns: int) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                task = await task_in(api, tenant, created["id"], {"idle"})
                if len(task["nodes"]) == turns:
                    return task
                await asyncio.sleep(0.1)

    await answered(1)
    turns = 1
    while (await handle.describe()).run_id == first_run:
        assert turns < 15, "no continue-as-new after 15 turns"
        sent = await api.post(messages, json={"message": f"turn {turns}"}, headers=tenant.headers)
        assert sent.status_code == 202, sent.text
        turns += 1
        await answered(turns)

    sent = await api.post(messages, json={"message": "after"}, headers=tenant.headers)
    assert sent.status_code == 202, sent.text
    task = await answered(turns + 1)
    users = [m["content"] for m in task["messages"] if m["role"] == "user"]
    assert users == [f"turn {i}" for i in range(turns)] + ["after"]
    assert task["messages"][-1]["content"] == said("after")
    # Node runs are numbered across runs, so the cap counts the whole task.
    assert [n["run"] for n in task["nodes"]] == list(range(1, turns + 2))
    await api.post(tenant.url(f"/tasks/{created['id']}/cancel"), headers=tenant.headers)
