"""A worker process dies (SIGKILL) in the middle of a workforce task, between one node and
the next: a new worker finishes the task, and no node that had finished runs again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp, hit_count
from tests.processes import kill, wait_until
from tests.support import Tenant

# Heavy: a stack of processes each; under xdist they share one worker, one at a time.
# Killing and restarting processes, on timers: under xdist, while no other test runs.
pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.alone]


async def made(stack: FaultStack, path: str, body: dict[str, Any]) -> str:
    response = await stack.client.post(path, json=body)
    assert response.status_code == 201, response.text
    made_id: str = response.json()["id"]
    return made_id


def http_tool(name: str, method: str, url: str) -> dict[str, Any]:
    return {"name": name, "steps": [{"name": "call", "type": "http", "method": method, "url": url}]}


async def test_a_worker_killed_between_nodes_leaves_each_finished_node_done_once(
    stack: FaultStack, tenant: Tenant, local_http: LocalHttp
):
    local_http.reset()
    local_http.effects.clear()
    charge = await made(
        stack, tenant.url("/tools"), http_tool("charge", "POST", f"{local_http.base}/effect")
    )
    # The node after it takes a while: the worker dies while it works.
    wait = await made(
        stack, tenant.url("/tools"), http_tool("wait", "GET", f"{local_http.base}/slow?seconds=3")
    )
    triage = await made(stack, tenant.url("/agents"), {"name": "Triage", "model": "scripted:echo"})
    reply = await made(stack, tenant.url("/agents"), {"name": "Reply", "model": "scripted:echo"})
    workforce = await made(
        stack,
        tenant.url("/workforces"),
        {
            "name": "Billing",
            "nodes": [
                {"id": "triage", "type": "agent", "agent_id": triage},
                {"id": "charge", "type": "tool", "tool_id": charge},
                {"id": "wait", "type": "tool", "tool_id": wait},
                {"id": "reply", "type": "agent", "agent_id": reply},
            ],
            "edges": [
                {"from": "triage", "to": "charge"},
                {"from": "charge", "to": "wait"},
                {"from": "wait", "to": "reply"},
            ],
            "entry": "triage",
        },
    )
    first = stack.start_worker()
    task_id = await made(stack, tenant.url(f"/workforces/{workforce}/tasks"), {"message": "pay"})
    await wait_until(lambda: hit_count(local_http, "/slow") >= 1, 60, "the wait node at work")

    kill(first)
    stack.start_worker()
    [task] = await stack.wait_final(tenant, [task_id], timeout=90)

    assert task["status"] == "completed", task["error"]
    assert [(n["node"], n["status"]) for n in task["nodes"]] == [
        ("triage", "completed"),
        ("charge", "completed"),
        ("wait", "completed"),
        ("reply", "completed"),
    ]
    # The charge was done before the worker died: it was not done again.
    assert hit_count(local_http, "/effect") == 1
    assert sum(local_http.effects.values()) == 1
    assert [m.get("author") for m in task["messages"] if m["role"] == "assistant"] == [
        "triage",
        "reply",
    ]
