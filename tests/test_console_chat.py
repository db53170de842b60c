"""The chat's task page: tool calls fold open to their input and output, a waiting call
carries its approve and reject buttons inline, and the page's script reads the task's events
through the console's own stream (the session, not a token), which another project's member
cannot open."""

from __future__ import annotations

import httpx
from temporalio.worker import Worker

from tests.support import Tenant
from tests.test_agent_tasks import FINAL, make_agent, make_tool, start, wait_for
from tests.test_console import csrf_of, signed_in
from tests.test_console_inbox import waiting_on


async def test_a_waiting_call_folds_open_with_its_buttons_and_then_its_output(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start(api, tenant, agent, 'call echo_tool {"text": "hi"}')
    [pending] = (await waiting_on(api, tenant, task_id, 1))["pending_approvals"]
    await signed_in(api, tenant.token)

    page = await api.get(f"/tasks/{task_id}")
    fold = page.text.split(f'<details class="tool-call" data-call="{pending["call_id"]}" open>')
    assert len(fold) == 2, page.text
    inside = fold[1].split("</details>")[0]
    assert "(waiting for approval)" in inside and '"text": "hi"' in inside
    action = f"/tasks/{task_id}/approvals/{pending['call_id']}"
    assert f'action="{action}"' in inside and "<h2>Waiting for a decision</h2>" not in page.text
    assert f'data-events="/tasks/{task_id}/events?after=' in page.text

    approved = await api.post(action, data={"decision": "approve", "csrf": csrf_of(page)})
    assert approved.status_code == 303
    assert (await wait_for(api, tenant, task_id, FINAL))["status"] == "completed"
    done = await api.get(f"/tasks/{task_id}")
    fold = done.text.split(f'<details class="tool-call" data-call="{pending["call_id"]}">')[1]
    assert '<pre class="output">tool got hi</pre>' in fold.split("</details>")[0]
    assert 'class="message tool"' not in done.text  # the result is in the fold, not again
    assert "data-events=" not in done.text  # a final task streams nothing


async def test_the_console_streams_a_tasks_events_to_its_members_only(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, worker: Worker
):
    agent = await make_agent(api, tenant, tools=[], model="scripted:echo")
    task_id = await start(api, tenant, agent, "stream me")
    await wait_for(api, tenant, task_id, FINAL | {"idle"})
    assert (await api.get(f"/tasks/{task_id}/events")).headers["location"] == "/sign-in"

    await signed_in(api, tenant.token)
    first = await api.get(f"/tasks/{task_id}/events?after=0")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    assert "event: message.delta" in first.text and "event: message.completed" in first.text
    assert "stream me" in first.text
    later = await api.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": "1"})
    assert "id: 1\r\n" not in later.text and "id: 2\r\n" in later.text
    assert (await api.get(f"/tasks/{task_id}/events?after=-1")).status_code == 422

    await signed_in(api, other_tenant.token)
    hidden = await api.get(f"/tasks/{task_id}/events")
    assert hidden.status_code == 404 and "stream me" not in hidden.text


async def test_a_call_is_approved_inline_with_arguments_the_member_wrote(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start(api, tenant, agent, 'call echo_tool {"text": "as asked"}')
    [pending] = (await waiting_on(api, tenant, task_id, 1))["pending_approvals"]
    await signed_in(api, tenant.token)
    page = await api.get(f"/tasks/{task_id}")
    action = f"/tasks/{task_id}/approvals/{pending['call_id']}"
    form = {"decision": "approve", "csrf": csrf_of(page)}

    for bad, problem in (("{nope", "arguments: not JSON"), ("[1]", "arguments: a JSON object")):
        refused = await api.post(action, data={**form, "arguments": bad})
        assert problem in (await api.get(refused.headers["location"])).text
    approved = await api.post(action, data={**form, "arguments": '{"text": "as edited"}'})
    assert approved.headers["location"] == f"/tasks/{task_id}"
    done = await wait_for(api, tenant, task_id, FINAL)
    assert "tool got as edited" in done["messages"][-1]["content"], done["messages"]
