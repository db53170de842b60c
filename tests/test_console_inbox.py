"""The console's tasks inbox through httpx against the real app and a real worker: the tabs
(Approvals, Escalated, Errors, All) and what each holds, the filters, bulk approve and reject
(a task with several waiting calls left out, and said so), a task's timeline and cost, and
who may do what (a viewer decides nothing; another project's tasks are not found)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from temporalio.worker import Worker

from tests.support import Tenant, create_token
from tests.test_agent_tasks import FINAL, make_agent, make_tool, start, wait_for
from tests.test_console import csrf_of, signed_in
from tests.test_task_budget import budgeted_task
from tests.test_workforce_tasks import fragile_workforce
from tests.test_workforce_tasks import start as start_workforce_task

TWO_CALLS = 'call echo_tool {"text": "a"}\ncall echo_tool {"text": "b"}'
PICKABLE = re.compile(r'name="call" value="([^"/]+)/([^"]+)"')


async def waiting_on(
    api: httpx.AsyncClient, tenant: Tenant, task_id: str, calls: int
) -> dict[str, Any]:
    """The task once `calls` tool calls wait for approval."""
    async with asyncio.timeout(30):
        while True:
            task = await wait_for(api, tenant, task_id, {"waiting-approval"} | FINAL)
            assert task["status"] == "waiting-approval", task
            if len(task["pending_approvals"]) == calls:
                return task
            await asyncio.sleep(0.1)


async def careful_tasks(api: httpx.AsyncClient, tenant: Tenant) -> tuple[str, list[str], str]:
    """An agent whose tool needs approval, two tasks waiting on one call each and one
    waiting on two: the agent, the two, and the one."""
    tool = await make_tool(api, tenant)
    agent = await make_agent(
        api, tenant, tools=[{"tool_id": tool, "approval": "required"}], name="Careful"
    )
    singles = [await start(api, tenant, agent, f'call echo_tool {{"text": "{t}"}}') for t in "xy"]
    double = await start(api, tenant, agent, TWO_CALLS)
    for task_id in singles:
        await waiting_on(api, tenant, task_id, 1)
    await waiting_on(api, tenant, double, 2)
    return agent, singles, double


async def test_bulk_approval_runs_each_picked_call_and_leaves_out_a_task_with_two(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    _, singles, double = await careful_tasks(api, tenant)
    await signed_in(api, tenant.token)
    inbox = await api.get("/tasks?tab=approvals")
    picks = PICKABLE.findall(inbox.text)
    assert sorted(task_id for task_id, _ in picks) == sorted(singles)
    assert f'href="/tasks/{double}"' in inbox.text
    assert re.search(rf"{double[:8]}</a>: 2 approvals wait", inbox.text), inbox.text

    # The double's first call, forged into the form, is refused and named; the rest runs.
    first_of_double = (await wait_for(api, tenant, double, {"waiting-approval"}))[
        "pending_approvals"
    ][0]["call_id"]
    decided = await api.post(
        "/tasks/decisions",
        data={
            "call": [f"{t}/{c}" for t, c in picks] + [f"{double}/{first_of_double}"],
            "decision": "approve",
            "tab": "approvals",
            "csrf": csrf_of(inbox),
        },
    )
    assert decided.status_code == 303
    after = await api.get(decided.headers["location"])
    assert "Approved the tool call of 2 tasks." in after.text
    assert f"task {double[:8]}: 2 approvals wait" in after.text
    for task_id in singles:
        done = await wait_for(api, tenant, task_id, FINAL)
        assert done["status"] == "completed", done["error"]
    still = await wait_for(api, tenant, double, {"waiting-approval"})
    assert len(still["pending_approvals"]) == 2


async def test_bulk_rejection_tells_each_model_the_reason(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start(api, tenant, agent, 'call echo_tool {"text": "no"}')
    await waiting_on(api, tenant, task_id, 1)
    await signed_in(api, tenant.token)
    inbox = await api.get("/tasks")
    [(picked, call_id)] = PICKABLE.findall(inbox.text)
    assert picked == task_id
    undecided = await api.post(
        "/tasks/decisions", data={"call": f"{task_id}/{call_id}", "csrf": csrf_of(inbox)}
    )
    assert "press Approve or Reject" in (await api.get(undecided.headers["location"])).text
    assert (await wait_for(api, tenant, task_id, FINAL | {"waiting-approval"}))[
        "status"
    ] == "waiting-approval"
    rejected = await api.post(
        "/tasks/decisions",
        data={
            "call": f"{task_id}/{call_id}",
            "decision": "reject",
            "reason": "not today",
            "csrf": csrf_of(inbox),
        },
    )
    assert "Rejected the tool call of 1 task." in (await api.get(rejected.headers["location"])).text
    done = await wait_for(api, tenant, task_id, FINAL | {"idle"})
    assert any("not today" in (m["content"] or "") for m in done["messages"]), done["messages"]
    nothing = await api.post(
        "/tasks/decisions", data={"decision": "approve", "csrf": csrf_of(inbox)}
    )
    assert "Tick the tasks" in (await api.get(nothing.headers["location"])).text


async def test_the_escalated_tab_holds_a_budget_question_and_an_escalated_workforce_task(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    budgeted, _ = await budgeted_task(api, tenant)
    workforce = await fragile_workforce(api, tenant, retries=0, on_failure="escalate")
    created = await start_workforce_task(api, tenant, workforce, 'call echo_tool {"text": "x"}')
    escalated = await wait_for(api, tenant, created["id"], {"escalated"} | FINAL)
    assert escalated["status"] == "escalated", escalated

    await signed_in(api, tenant.token)
    page = await api.get("/tasks?tab=escalated")
    assert f'href="/tasks/{budgeted}"' in page.text
    assert "budget reached: go on?" in page.text
    assert f'href="/tasks/{created["id"]}"' in page.text
    # A question is answered on its task's page, not in bulk.
    assert PICKABLE.findall(page.text) == []
    assert f"{budgeted[:8]}</a>: asks a question" in page.text
    approvals = await api.get("/tasks?tab=approvals")
    assert f'href="/tasks/{budgeted}"' not in approvals.text

    by_workforce = await api.get(f"/tasks?tab=escalated&workforce_id={workforce}")
    assert f'href="/tasks/{created["id"]}"' in by_workforce.text
    assert f'href="/tasks/{budgeted}"' not in by_workforce.text
    by_status = await api.get("/tasks?tab=escalated&status=escalated")
    assert f'href="/tasks/{created["id"]}"' in by_status.text
    assert f'href="/tasks/{budgeted}"' not in by_status.text


async def test_the_filters_pick_an_agents_tasks_and_a_status(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    one = await make_agent(api, tenant, tools=[], model="scripted:echo", name="One")
    two = await make_agent(api, tenant, tools=[], model="scripted:echo", name="Two")
    of_one, of_two = await start(api, tenant, one, "hi"), await start(api, tenant, two, "hi")
    for task_id in (of_one, of_two):
        await wait_for(api, tenant, task_id, FINAL | {"idle"})
    await signed_in(api, tenant.token)

    mine = await api.get(f"/tasks?tab=all&agent_id={one}")
    assert f'href="/tasks/{of_one}"' in mine.text and f'href="/tasks/{of_two}"' not in mine.text
    both = await api.get("/tasks?tab=all")
    assert f'href="/tasks/{of_one}"' in both.text and f'href="/tasks/{of_two}"' in both.text
    status = (await wait_for(api, tenant, of_one, FINAL | {"idle"}))["status"]
    other = "failed" if status != "failed" else "completed"
    assert f'href="/tasks/{of_one}"' in (await api.get(f"/tasks?tab=all&status={status}")).text
    assert f'href="/tasks/{of_one}"' not in (await api.get(f"/tasks?tab=all&status={other}")).text
    # Nothing is waiting, so the approvals tab offers no bulk form.
    assert "Approve picked" not in (await api.get("/tasks?tab=approvals")).text


async def test_a_task_page_shows_its_timeline_and_cost(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start(api, tenant, agent, 'call echo_tool {"text": "hi"}')
    done = await wait_for(api, tenant, task_id, FINAL)
    assert done["status"] == "completed", done["error"]
    await signed_in(api, tenant.token)
    page = await api.get(f"/tasks/{task_id}")
    timeline = page.text.split("<h2>Timeline</h2>", 1)[1]
    assert timeline.index("tool.call.requested") < timeline.index("tool.run.completed")
    assert "message.delta" not in timeline
    actions = done["cost"]["actions"]
    assert actions >= 1
    assert f'<dd id="cost">{actions} action' in page.text
    assert done["temporal_ui_url"].replace("&", "&amp;") in page.text


async def test_a_viewer_decides_nothing_and_another_projects_tasks_are_not_found(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start(api, tenant, agent, 'call echo_tool {"text": "x"}')
    [pending] = (await waiting_on(api, tenant, task_id, 1))["pending_approvals"]
    call = f"{task_id}/{pending['call_id']}"

    viewer = await create_token(api, tenant.headers, role="viewer")
    await signed_in(api, viewer["token"])
    inbox = await api.get("/tasks")
    assert f'href="/tasks/{task_id}"' in inbox.text
    assert "Approve picked" not in inbox.text and PICKABLE.findall(inbox.text) == []
    refused = await api.post(
        "/tasks/decisions", data={"call": call, "decision": "approve", "csrf": csrf_of(inbox)}
    )
    assert refused.status_code == 403

    await signed_in(api, other_tenant.token)
    theirs = await api.get("/tasks?tab=all")
    assert task_id not in theirs.text
    forged = await api.post(
        "/tasks/decisions", data={"call": call, "decision": "approve", "csrf": csrf_of(theirs)}
    )
    shown = (await api.get(forged.headers["location"])).text
    assert f"task {task_id[:8]}: task" in shown and "not found" in shown
    assert (await wait_for(api, tenant, task_id, {"waiting-approval"}))["pending_approvals"]
