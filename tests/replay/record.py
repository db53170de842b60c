"""Records the histories tests/test_replay.py replays: `make record-histories`, or
`python -m tests.replay.record [scenario ...]` (default: all of them).

Temporal dev servers of its own (started as the test suite starts them), a fresh SQLite
database, a real worker (`create_worker`) and the real API in process drive each scenario on
the offline scripted models and the local embedding model; each history is then written to
tests/replay/<scenario>.json, encrypted with the fixed test-only key of
tests/replay/__init__.py. The continue-as-new scenario runs on a server of its own that
suggests continue-as-new after 100 history events, so a conversation of a few turns continues
as new (as tests/test_continue_as_new.py does it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from baton import temporal
from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.db.repositories import credits as credit_repo
from baton.db.tables import Organization
from baton.domain.credits import MICROS, Currency, PlanBook
from baton.domain.knowledge import embed_workflow_id
from baton.services.credits import wake_paused_tasks
from baton.settings import Settings
from tests.fakes import mcp_server
from tests.replay import HISTORIES, SCENARIOS, replay_settings
from tests.support import Tenant, venv_binary
from worker import create_worker

logger = logging.getLogger("tests.replay.record")

TASK_QUEUE = "replay-recording"
FINAL_TASK = {"completed", "failed", "cancelled", "timed-out"}
FINAL_RUN = {"succeeded", "failed", "cancelled"}
# History events after which the dev server suggests continue-as-new.
SUGGEST_CONTINUE_AS_NEW_AFTER = 100

Scenario = Callable[["Recording"], Awaitable[WorkflowHandle[Any, Any]]]


class Recording:
    """One scenario's view: the API client, a tenant of its own, the Temporal client and the
    database (for what only an operator does: plans and grants)."""

    def __init__(
        self,
        api: httpx.AsyncClient,
        tenant: Tenant,
        client: Client,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.api = api
        self.tenant = tenant
        self.client = client
        self.sessions = sessions

    async def post(self, path: str, body: Any = None, status: int = 201) -> Any:
        response = await self.api.post(
            self.tenant.url(path), json=body, headers=self.tenant.headers
        )
        if response.status_code != status:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    async def get(self, path: str) -> Any:
        response = await self.api.get(self.tenant.url(path), headers=self.tenant.headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text}")
        return response.json()

    async def until(
        self, path: str, done: Callable[[Any], bool], what: str, timeout: float = 60
    ) -> Any:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    body = await self.get(path)
                    if done(body):
                        return body
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise RuntimeError(f"{path}: never {what}") from None

    async def delete(self, path: str) -> None:
        response = await self.api.delete(self.tenant.url(path), headers=self.tenant.headers)
        if response.status_code >= 300:
            raise RuntimeError(f"DELETE {path}: {response.status_code} {response.text}")

    async def scheduled_run(
        self, schedule: dict[str, Any], run_prefix: str
    ) -> WorkflowHandle[Any, Any]:
        """Triggers the schedule and waits for the run it starts (`<run_prefix>-schedule-
        <id>-<time>`) to end."""
        await self.client.get_schedule_handle(schedule["temporal_schedule_id"]).trigger()
        query = f'WorkflowId STARTS_WITH "{run_prefix}-schedule-{schedule["id"]}"'
        async with asyncio.timeout(30):
            while not (found := [w.id async for w in self.client.list_workflows(query)]):
                await asyncio.sleep(0.2)
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(found[0])
        await handle.result()
        return handle

    async def echo_tool(self) -> str:
        tool = await self.post(
            "/tools",
            {
                "name": "Echo tool",
                "description": "Repeats its text",
                "params": [{"name": "text", "type": "text"}],
                "steps": [
                    {"name": "say", "type": "template", "template": "tool got {{ params.text }}"}
                ],
            },
        )
        tool_id: str = tool["id"]
        return tool_id

    async def agent(self, **spec: Any) -> str:
        agent = await self.post("/agents", {"name": "Helper", **spec})
        agent_id: str = agent["id"]
        return agent_id


async def agent_task_approval_and_follow_up(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A tool call that waits for an approval, is approved with edited arguments, then a
    follow-up message, then the idle task completes."""
    tool_id = await rec.echo_tool()
    agent_id = await rec.agent(
        model="scripted:tools",
        tools=[{"tool_id": tool_id, "approval": "required"}],
        idle_timeout_seconds=3,
    )
    task = await rec.post(f"/agents/{agent_id}/tasks", {"message": 'call echo_tool {"text": "a"}'})
    path = f"/tasks/{task['id']}"
    waiting = await rec.until(
        path, lambda t: t["status"] in {"waiting-approval"} | FINAL_TASK, "waiting for approval"
    )
    if waiting["status"] != "waiting-approval":
        raise RuntimeError(f"the task did not wait for an approval: {waiting}")
    [pending] = waiting["pending_approvals"]
    await rec.post(
        f"{path}/approvals/{pending['call_id']}",
        {"approve": True, "arguments": {"text": "edited"}},
        status=200,
    )
    answered = await rec.until(path, lambda t: t["status"] in {"idle"} | FINAL_TASK, "idle")
    count = len(answered["messages"])
    await rec.post(f"{path}/messages", {"message": "thank you"}, status=202)
    await rec.until(path, lambda t: len(t["messages"]) > count + 1, "answering the follow-up")
    done = await rec.until(path, lambda t: t["status"] in FINAL_TASK, "finished")
    if done["status"] != "completed":
        raise RuntimeError(f"the task did not complete: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def tool_run_foreach_if_template(rec: Recording) -> WorkflowHandle[Any, Any]:
    """Template steps over a `foreach`, an LLM step (an activity) for each item, a step whose
    `if` is false and one whose `if` is true."""
    tool = await rec.post(
        "/tools",
        {
            "name": "Fan out",
            "params": [{"name": "items", "type": "list_of_text"}, {"name": "n", "type": "integer"}],
            "steps": [
                {
                    "name": "each",
                    "type": "template",
                    "template": "<{{ foreach.item }}>",
                    "foreach": "params.items",
                },
                {
                    "name": "ask",
                    "type": "llm",
                    "prompt": "Q: {{ foreach.item }}",
                    "foreach": "steps.each.output",
                    "concurrency": 2,
                },
                {"name": "never", "type": "template", "if": "params.n > 100", "template": "x"},
                {"name": "small", "type": "template", "if": "params.n < 100", "template": "small"},
            ],
            "output": "{{ {'each': steps.each.output, 'small': steps.small.output} }}",
        },
    )
    run = await rec.post(f"/tools/{tool['id']}/runs", {"params": {"items": ["a", "b"], "n": 3}})
    done = await rec.until(f"/tool-runs/{run['id']}", lambda r: r["status"] in FINAL_RUN, "ended")
    if done["status"] != "succeeded":
        raise RuntimeError(f"the tool run did not succeed: {done['error']}")
    return rec.client.get_workflow_handle(done["workflow_id"])


async def tool_run_within_its_time_limit(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A run started with its plan's `tool_run_seconds` (the default plan's 900): its steps
    (an LLM step, a delay) race the limit's timer (workflow.patched("tool-run-time-limit"))."""
    tool = await rec.post(
        "/tools",
        {
            "name": "Timed",
            "steps": [
                {"name": "ask", "type": "llm", "prompt": "Q: time"},
                {"name": "nap", "type": "delay", "seconds": 0.2},
            ],
        },
    )
    run = await rec.post(f"/tools/{tool['id']}/runs", {"params": {}})
    done = await rec.until(f"/tool-runs/{run['id']}", lambda r: r["status"] in FINAL_RUN, "ended")
    if done["status"] != "succeeded":
        raise RuntimeError(f"the tool run did not succeed: {done['error']}")
    return rec.client.get_workflow_handle(done["workflow_id"])


async def agent_task_continued_as_new(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A conversation that outgrows its history: the first run, which continued as new."""
    agent_id = await rec.agent(model="scripted:echo", idle_timeout_seconds=60)
    task = await rec.post(f"/agents/{agent_id}/tasks", {"message": "turn 0"})
    path = f"/tasks/{task['id']}"
    handle = rec.client.get_workflow_handle(task["workflow_id"])
    first_run = (await handle.describe()).run_id

    async def answered(turns: int) -> None:
        await rec.until(
            path,
            lambda t: t["status"] == "idle" and len(t["messages"]) == 2 * turns,
            f"answering turn {turns}",
        )

    await answered(1)
    turns = 1
    while (await handle.describe()).run_id == first_run:
        if turns >= 15:
            raise RuntimeError("no continue-as-new after 15 turns")
        await rec.post(f"{path}/messages", {"message": f"turn {turns}"}, status=202)
        turns += 1
        await answered(turns)
    await rec.post(f"{path}/cancel", status=202)
    return rec.client.get_workflow_handle(task["workflow_id"], run_id=first_run)


async def enrichment(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A knowledge set's rows enriched by a tool of template steps."""
    tool = await rec.post(
        "/tools",
        {
            "name": "Greet",
            "params": [{"name": "name"}],
            "steps": [{"name": "say", "type": "template", "template": "Hello {{ params.name }}"}],
            "output": "{{ {'text': steps.say.output} }}",
        },
    )
    created = await rec.post(
        "/knowledge/sets",
        {
            "name": "people",
            "columns": [{"name": n} for n in ("name", "greeting", "greeting_error")],
        },
    )
    sets = f"/knowledge/sets/{created['id']}"
    await rec.post(f"{sets}/rows", [{"name": "Ada"}, {"name": "Grace"}, {"name": "Alan"}])
    job = await rec.post(
        f"{sets}/enrichments",
        {
            "tool_id": tool["id"],
            "input_mapping": {"name": {"column": "name"}},
            "output_mapping": {"greeting": "text"},
            "batch_size": 2,
        },
    )
    done = await rec.until(
        f"{sets}/enrichments/{job['id']}", lambda j: j["status"] in FINAL_RUN, "ended"
    )
    if done["status"] != "succeeded" or done["failed"]:
        raise RuntimeError(f"the enrichment did not succeed: {done}")
    return rec.client.get_workflow_handle(done["workflow_id"])


async def knowledge_embedding(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A set on the offline `local` embedding model, its rows embedded as they are added."""
    created = await rec.post(
        "/knowledge/sets",
        {"name": "facts", "columns": [{"name": "text"}], "embedding": {"provider": "local"}},
    )
    await rec.post(
        f"/knowledge/sets/{created['id']}/rows",
        [{"text": "The Eiffel Tower is in Paris."}, {"text": "Water boils at 100 degrees."}],
    )
    handle: WorkflowHandle[Any, Any] = rec.client.get_workflow_handle(
        embed_workflow_id(created["id"])
    )
    await handle.result()
    return handle


async def agent_task_from_schedule(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A schedule, triggered once, starts a task that answers and completes."""
    agent_id = await rec.agent(model="scripted:echo")
    schedule = await rec.post(
        f"/agents/{agent_id}/schedules",
        {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "message": "Daily report"},
    )
    handle = await rec.scheduled_run(schedule, "task")
    await rec.delete(f"/agents/{agent_id}/schedules/{schedule['id']}")
    return handle


async def agent_task_flat_approval_and_follow_up(rec: Recording) -> WorkflowHandle[Any, Any]:
    """`agent_task_approval_and_follow_up` on the flat path (`workflow.patched("flat-turns")`):
    LLM calls that read and write the conversation, local-activity bookkeeping, and an idle
    timer that a follow-up leaves running (it fires, is set again, then ends the task)."""
    return await agent_task_approval_and_follow_up(rec)


async def agent_task_flat_continued_as_new(rec: Recording) -> WorkflowHandle[Any, Any]:
    """`agent_task_continued_as_new` on the flat path: the run carries a message count across
    continue-as-new, not the transcript."""
    return await agent_task_continued_as_new(rec)


async def agent_task_results_while_approving(rec: Recording) -> WorkflowHandle[Any, Any]:
    """Two calls in one turn, one waiting for approval: the other's result is written as
    soon as it is done (`workflow.patched("tool-results-as-they-come")`)."""
    tool_id = await rec.echo_tool()
    agent_id = await rec.agent(
        model="scripted:tools",
        tools=[{"tool_id": tool_id, "max_auto_runs": 1}],
    )
    task = await rec.post(
        f"/agents/{agent_id}/tasks",
        {"message": 'call echo_tool {"text": "a"}\ncall echo_tool {"text": "b"}'},
    )
    path = f"/tasks/{task['id']}"
    waiting = await rec.until(
        path, lambda t: t["status"] in {"waiting-approval"} | FINAL_TASK, "waiting for approval"
    )
    if waiting["status"] != "waiting-approval":
        raise RuntimeError(f"the task did not wait for an approval: {waiting}")
    for pending in waiting["pending_approvals"]:
        await rec.post(f"{path}/approvals/{pending['call_id']}", {"approve": True}, status=200)
    done = await rec.until(path, lambda t: t["status"] in FINAL_TASK, "finished")
    if done["status"] != "completed":
        raise RuntimeError(f"the task did not complete: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def workforce_condition_handover_tool_follow_up(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A workforce task through every kind of node: a rule condition, an agent that hands
    over to a tool node, then to a second agent; then a follow-up message takes a second
    pass through the graph, and the idle task completes."""
    tool_id = await rec.echo_tool()
    triage = await rec.agent(name="Triage", model="scripted:echo")
    reply = await rec.agent(name="Reply", model="scripted:echo")
    workforce = await rec.post(
        "/workforces",
        {
            "name": "Support",
            "nodes": [
                {
                    "id": "route",
                    "type": "condition",
                    "branches": [{"to": "triage", "rules": [{"op": "contains", "value": "help"}]}],
                    "default": "reply",
                },
                {"id": "triage", "type": "agent", "agent_id": triage},
                {
                    "id": "lookup",
                    "type": "tool",
                    "tool_id": tool_id,
                    "params": {"text": "{{ message }}"},
                },
                {"id": "reply", "type": "agent", "agent_id": reply},
            ],
            "edges": [
                {"from": "triage", "to": "lookup", "kind": "handover"},
                {"from": "lookup", "to": "reply", "kind": "handover"},
            ],
            "entry": "route",
            "idle_timeout_seconds": 3,
        },
    )
    task = await rec.post(f"/workforces/{workforce['id']}/tasks", {"message": "help me"})
    path = f"/tasks/{task['id']}"
    await rec.until(path, lambda t: t["status"] in {"idle"} | FINAL_TASK, "idle")
    await rec.post(f"{path}/messages", {"message": "thanks"}, status=202)
    done = await rec.until(path, lambda t: t["status"] in FINAL_TASK, "finished")
    if done["status"] != "completed" or len(done["nodes"]) != 6:
        raise RuntimeError(f"the workforce task did not take two passes: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def workforce_task_from_schedule_with_delegation(
    rec: Recording,
) -> WorkflowHandle[Any, Any]:
    """A workforce's schedule, triggered once, starts a task that makes its own row and loads
    the workforce; triage delegates to billing, then hands over to reply."""
    triage = await rec.agent(name="Triage", model="scripted:tools")
    billing = await rec.agent(name="Billing", model="scripted:echo")
    reply = await rec.agent(name="Reply", model="scripted:echo")
    workforce = await rec.post(
        "/workforces",
        {
            "name": "Support desk",
            "nodes": [
                {"id": "triage", "type": "agent", "agent_id": triage},
                {"id": "billing", "type": "agent", "agent_id": billing},
                {"id": "reply", "type": "agent", "agent_id": reply},
            ],
            "edges": [
                {"from": "triage", "to": "billing", "kind": "delegate"},
                {"from": "triage", "to": "reply", "kind": "handover"},
            ],
            "entry": "triage",
        },
    )
    schedules = f"/workforces/{workforce['id']}/schedules"
    schedule = await rec.post(
        schedules, {"cron": "@daily", "message": 'call ask_billing {"message": "refund order 7"}'}
    )
    handle = await rec.scheduled_run(schedule, "workforce-task")
    listed = (await rec.get(f"/tasks?workforce_id={workforce['id']}"))["items"]
    [task] = [t for t in listed if t["workflow_id"] == handle.id]
    done = await rec.get(f"/tasks/{task['id']}")
    if [m["type"] for m in done["messages"]].count("delegation") != 1:
        raise RuntimeError(f"the scheduled workforce task did not delegate: {done}")
    await rec.delete(f"{schedules}/{schedule['id']}")
    return handle


async def agent_task_mcp_tools(rec: Recording) -> WorkflowHandle[Any, Any]:
    """An agent with an MCP server's tools (tests/fakes/mcp_server.py over stdio): the tools
    listed when the task begins, one call answered, one that waits for an approval, an
    `isError` result the model reads; the idle task completes."""
    await rec.post(
        "/integrations",
        {
            "name": "time",
            "kind": "mcp",
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(Path(mcp_server.__file__))],
        },
    )
    agent_id = await rec.agent(
        model="scripted:tools",
        mcp=[
            {"integration": "time", "tools": ["get_current_time", "fail"]},
            {"integration": "time", "tools": ["shout"], "approval": "required"},
        ],
        idle_timeout_seconds=3,
    )
    message = (
        'call time_get_current_time {"timezone": "UTC"}\n'
        'call time_fail {"reason": "closed"}\n'
        'call time_shout {"text": "careful"}'
    )
    task = await rec.post(f"/agents/{agent_id}/tasks", {"message": message})
    path = f"/tasks/{task['id']}"
    waiting = await rec.until(
        path, lambda t: t["status"] in {"waiting-approval"} | FINAL_TASK, "waiting for approval"
    )
    if waiting["status"] != "waiting-approval":
        raise RuntimeError(f"the task did not wait for an approval: {waiting}")
    [pending] = waiting["pending_approvals"]
    await rec.post(f"{path}/approvals/{pending['call_id']}", {"approve": True}, status=200)
    done = await rec.until(path, lambda t: t["status"] in FINAL_TASK, "finished", timeout=90)
    results = [m["content"] for m in done["messages"] if m["role"] == "tool"]
    if done["status"] != "completed" or len(results) != 3 or "CAREFUL!" not in results:
        raise RuntimeError(f"the task did not call its three MCP tools: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def agent_task_same_delegation(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A workforce node that delegates by an edge with `task: same`: the node's own task
    (the history recorded) starts its target's task on the conversation so far, one such
    delegation at a time."""
    triage = await rec.agent(name="Triage", model="scripted:tools")
    billing = await rec.agent(name="Billing", model="scripted:echo")
    workforce = await rec.post(
        "/workforces",
        {
            "name": "Same conversation",
            "nodes": [
                {"id": "triage", "type": "agent", "agent_id": triage},
                {"id": "billing", "type": "agent", "agent_id": billing},
            ],
            "edges": [{"from": "triage", "to": "billing", "kind": "delegate", "task": "same"}],
            "entry": "triage",
        },
    )
    ask = 'call ask_billing {"message": "and the refund?"}'
    task = await rec.post(f"/workforces/{workforce['id']}/tasks", {"message": ask})
    done = await rec.until(f"/tasks/{task['id']}", lambda t: t["status"] in FINAL_TASK, "ended")
    if done["status"] != "completed":
        raise RuntimeError(f"the workforce task did not complete: {done}")
    if [m.get("type") for m in done["messages"]].count("delegation") != 1:
        raise RuntimeError(f"triage did not delegate: {done}")
    [node] = [n for n in done["nodes"] if n["node"] == "triage"]
    triage_task = await rec.get(f"/tasks/{node['task_id']}")
    return rec.client.get_workflow_handle(triage_task["workflow_id"])


async def agent_task_out_of_credits_resumed(rec: Recording) -> WorkflowHandle[Any, Any]:
    """A task whose organisation has no action left pauses `out-of-credits` before its model
    call; a grant wakes it (`credits_arrived`), and it calls its tool and completes."""
    plans = PlanBook()
    org_id, project_id = rec.tenant.org_id, rec.tenant.project_id
    async with rec.sessions.begin() as session:
        await credit_repo.set_plan(session=session, plans=plans, org_id=org_id, plan="free")
        await credit_repo.debit(
            session=session,
            plans=plans,
            org_id=org_id,
            project_id=project_id,
            currency=Currency.actions,
            micros=200 * MICROS,
            key="replay-spent-the-month",
        )
    tool_id = await rec.echo_tool()
    agent_id = await rec.agent(
        model="scripted:tools", tools=[{"tool_id": tool_id}], idle_timeout_seconds=0
    )
    task = await rec.post(f"/agents/{agent_id}/tasks", {"message": 'call echo_tool {"text": "a"}'})
    path = f"/tasks/{task['id']}"
    paused = await rec.until(
        path, lambda t: t["status"] in {"out-of-credits"} | FINAL_TASK, "out of credits"
    )
    if paused["status"] != "out-of-credits":
        raise RuntimeError(f"the task did not pause: {paused}")
    query = f"WorkflowId = '{task['workflow_id']}' AND BatonStatus = 'out-of-credits'"
    async with asyncio.timeout(20):
        while not [w async for w in rec.client.list_workflows(query)]:
            await asyncio.sleep(0.2)
    async with rec.sessions.begin() as session:
        await credit_repo.grant(
            session=session, org_id=org_id, currency=Currency.actions, amount=5, key="replay"
        )
    if await wake_paused_tasks(rec.client, [project_id]) != 1:
        raise RuntimeError("the paused task was not told credits arrived")
    done = await rec.until(path, lambda t: t["status"] in FINAL_TASK, "finished")
    if done["status"] != "completed":
        raise RuntimeError(f"the task did not complete: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def agent_task_budget_approval(rec: Recording) -> WorkflowHandle[Any, Any]:
    """An agent that may run one tool per task runs two in a turn, then asks before its next
    model call (the pending approval `budget-1`); approved, it answers and completes."""
    tool_id = await rec.echo_tool()
    agent_id = await rec.agent(
        model="scripted:tools",
        tools=[{"tool_id": tool_id}],
        max_actions_per_task=1,
        idle_timeout_seconds=0,
    )
    message = 'call echo_tool {"text": "a"}\ncall echo_tool {"text": "b"}'
    task = await rec.post(f"/agents/{agent_id}/tasks", {"message": message})
    path = f"/tasks/{task['id']}"
    waiting = await rec.until(
        path, lambda t: t["status"] in {"waiting-approval"} | FINAL_TASK, "waiting for approval"
    )
    if [p["call_id"] for p in waiting["pending_approvals"]] != ["budget-1"]:
        raise RuntimeError(f"the task did not ask to go past its budget: {waiting}")
    await rec.post(f"{path}/approvals/budget-1", {"approve": True}, status=200)
    done = await rec.until(path, lambda t: t["status"] in FINAL_TASK, "finished")
    if done["status"] != "completed":
        raise RuntimeError(f"the task did not complete: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def agent_task_queued_for_capacity(rec: Recording) -> WorkflowHandle[Any, Any]:
    """On the `free` plan (two tasks at once), a third task waits queued for capacity, is
    woken when the first ends, then waits for an approval like the others and completes."""
    async with rec.sessions.begin() as session:
        await session.execute(
            update(Organization).where(Organization.id == rec.tenant.org_id).values(plan="free")
        )
    tool_id = await rec.echo_tool()
    agent_id = await rec.agent(
        model="scripted:tools", tools=[{"tool_id": tool_id, "approval": "required"}]
    )

    async def approve(path: str) -> None:
        waiting = await rec.until(
            path, lambda t: t["status"] in {"waiting-approval"} | FINAL_TASK, "waiting"
        )
        if waiting["status"] != "waiting-approval":
            raise RuntimeError(f"the task did not wait for an approval: {waiting}")
        [pending] = waiting["pending_approvals"]
        await rec.post(f"{path}/approvals/{pending['call_id']}", {"approve": True}, status=200)

    paths = []
    for text in ("first", "second", "third"):
        message = f'call echo_tool {{"text": "{text}"}}'
        task = await rec.post(f"/agents/{agent_id}/tasks", {"message": message})
        paths.append(f"/tasks/{task['id']}")
        if text != "third":
            await rec.until(paths[-1], lambda t: t["status"] == "waiting-approval", "waiting")
    await rec.until(
        paths[2], lambda t: t["details"] == "waiting for capacity", "waiting for capacity"
    )
    await approve(paths[0])
    await approve(paths[2])
    await approve(paths[1])
    done = await rec.until(paths[2], lambda t: t["status"] in FINAL_TASK, "finished")
    if done["status"] != "completed":
        raise RuntimeError(f"the task did not complete: {done}")
    return rec.client.get_workflow_handle(task["workflow_id"])


async def bulk_tasks(rec: Recording) -> WorkflowHandle[Any, Any]:
    """One task per row of a set, two rows a batch, a second between batches."""
    agent_id = await rec.agent(model="scripted:echo", tools=[])
    created = await rec.post("/knowledge/sets", {"name": "people", "columns": [{"name": "name"}]})
    await rec.post(
        f"/knowledge/sets/{created['id']}/rows", [{"name": n} for n in ("Ada", "Grace", "Alan")]
    )
    path = f"/agents/{agent_id}/bulk-tasks"
    run = await rec.post(
        path,
        {
            "set_id": created["id"],
            "message_template": "Greet {{ row.name }}",
            "per_interval": 2,
            "interval_seconds": 1,
        },
    )
    done = await rec.until(
        f"{path}/{run['id']}", lambda r: r["status"] in {"completed", "failed"}, "ended"
    )
    if done["status"] != "completed" or done["counts"]["failed"]:
        raise RuntimeError(f"the bulk run did not complete: {done}")
    return rec.client.get_workflow_handle(run["workflow_id"])


RECORDERS: dict[str, Scenario] = {
    "agent_task_approval_and_follow_up": agent_task_approval_and_follow_up,
    "tool_run_foreach_if_template": tool_run_foreach_if_template,
    "agent_task_continued_as_new": agent_task_continued_as_new,
    "enrichment": enrichment,
    "knowledge_embedding": knowledge_embedding,
    "agent_task_from_schedule": agent_task_from_schedule,
    "agent_task_flat_approval_and_follow_up": agent_task_flat_approval_and_follow_up,
    "agent_task_flat_continued_as_new": agent_task_flat_continued_as_new,
    "agent_task_results_while_approving": agent_task_results_while_approving,
    "workforce_condition_handover_tool_follow_up": workforce_condition_handover_tool_follow_up,
    "workforce_task_from_schedule_with_delegation": workforce_task_from_schedule_with_delegation,
    "agent_task_mcp_tools": agent_task_mcp_tools,
    "agent_task_same_delegation": agent_task_same_delegation,
    "agent_task_out_of_credits_resumed": agent_task_out_of_credits_resumed,
    "agent_task_budget_approval": agent_task_budget_approval,
    "agent_task_queued_for_capacity": agent_task_queued_for_capacity,
    "tool_run_within_its_time_limit": tool_run_within_its_time_limit,
    "bulk_tasks": bulk_tasks,
}
assert tuple(RECORDERS) == SCENARIOS, "tests/replay/__init__.py lists the scenarios recorded"
CONTINUES_AS_NEW = {"agent_task_continued_as_new", "agent_task_flat_continued_as_new"}


async def record(names: list[str], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="baton-record-") as data_dir:
        database_url = f"sqlite+aiosqlite:///{Path(data_dir) / 'baton.db'}"
        await migrate.aupgrade(database_url)
        settings = replay_settings(
            data_dir=Path(data_dir),
            database_url=database_url,
            temporal_task_queue=TASK_QUEUE,
            temporal_ui_url="http://localhost:8233",
            mcp_stdio_enabled=True,
        )
        engine = create_engine(database_url)
        session_factory = create_session_factory(engine)
        try:
            # Each scenario on a dev server as the suite runs it, but for the one that must
            # continue as new: its server suggests it early.
            for eager in (False, True):
                group = [name for name in names if (name in CONTINUES_AS_NEW) == eager]
                if group:
                    await record_on_server(group, eager, settings, session_factory, out)
        finally:
            await engine.dispose()


async def record_on_server(
    names: list[str],
    eager: bool,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    out: Path,
) -> None:
    extra_args = list(temporal.DEV_SERVER_SQLITE_ARGS)
    if eager:
        extra_args += [
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AFTER}",
        ]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=temporal.SEARCH_ATTRIBUTES,
        data_converter=temporal.data_converter(settings, session_factory),
        dev_server_extra_args=extra_args,
    )
    try:
        worker = create_worker(
            env.client, task_queue=TASK_QUEUE, session_factory=session_factory, settings=settings
        )
        app = create_app(settings, temporal_client=env.client)
        async with worker, app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as api:
                for name in names:
                    await record_one(name, api, env.client, session_factory, out)
    finally:
        await env.shutdown()


async def record_one(
    name: str,
    api: httpx.AsyncClient,
    client: Client,
    session_factory: async_sessionmaker[AsyncSession],
    out: Path,
) -> None:
    async with session_factory.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name=f"Replay {name}", project_name=name
        )
    tenant = Tenant(org_id=created.org.id, project_id=created.project.id, token=created.token)
    handle = await RECORDERS[name](Recording(api, tenant, client, session_factory))
    history = await handle.fetch_history()
    check_one_run(name, history)
    # Indented and key-sorted, so a re-recording diffs line by line.
    text = json.dumps(json.loads(history.to_json()), indent=1, sort_keys=True) + "\n"
    (out / f"{name}.json").write_text(text)
    logger.info("recorded %s: %d events", name, len(history.events))


def check_one_run(name: str, history: WorkflowHistory) -> None:
    """The history is the whole scenario: its first run, which continued as new only where
    that is the point (a handle without a run id would fetch the chain's last run)."""
    started = history.events[0].workflow_execution_started_event_attributes
    if started.continued_execution_run_id:
        raise RuntimeError(f"{name}: recorded a run that a continue-as-new started")
    continued = (
        history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    )
    if continued != (name in CONTINUES_AS_NEW):
        raise RuntimeError(f"{name}: {'un' if continued else ''}expectedly continued as new")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=", ".join(SCENARIOS))
    parser.add_argument("--out", type=Path, default=HISTORIES)
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(record(args.scenarios or list(SCENARIOS), args.out))


if __name__ == "__main__":
    main()
