"""An agent task as a workforce node, and delegation: a `delegate` edge gives the source
agent a tool `ask_<target>` that runs the target's agent in a task of its own (a child
`AgentTaskWorkflow`) and brings back its answer as the tool result. Through the real
Temporal server and a real worker, on the offline scripted models."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.db.tables import Task
from baton.domain.agents import AgentSpec
from baton.domain.models import SCRIPTED_LABEL
from baton.domain.tasks import (
    MAX_DELEGATION_DEPTH,
    AgentTaskInput,
    AgentTaskResult,
    PendingApproval,
    TaskState,
    TaskStatus,
)
from baton.domain.workforces import AgentNode, WorkforceSpec
from baton.settings import Settings
from tests.support import Tenant
from tests.support.factories import make_agent
from workflows.agent_task import AgentTaskWorkflow
from workflows.tool_sources import NEEDS_APPROVAL_ARG, callable_tools


def workforce(agents: dict[str, str], *delegations: dict[str, Any]) -> WorkforceSpec:
    """A graph of agent nodes (node id -> agent id) whose entry is the first, with these
    delegate edges (`from`, `to` and any setting of the edge)."""
    return WorkforceSpec.model_validate(
        {
            "name": "Support",
            "nodes": [{"id": node, "type": "agent", "agent_id": a} for node, a in agents.items()],
            "edges": [{"kind": "delegate", **edge} for edge in delegations],
            "entry": next(iter(agents)),
        }
    )


async def start_node(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    spec: WorkforceSpec,
    message: str,
    params: dict[str, Any] | None = None,
) -> tuple[str, WorkflowHandle[Any, AgentTaskResult]]:
    """The entry node's agent working on `message`, as a workforce starts a node run."""
    node = spec.node(spec.entry)
    assert isinstance(node, AgentNode)
    task_id = str(uuid.uuid4())
    handle = await temporal_env.client.start_workflow(
        "AgentTaskWorkflow",
        AgentTaskInput(
            task_id=task_id,
            project_id=tenant.project_id,
            agent_id=node.agent_id,
            message=message,
            params=params or {},
            node=node.id,
            workforce=spec,
            single_turn=True,
        ),
        id=task_repo.workflow_id_for(task_id),
        task_queue=settings.temporal_task_queue,
        result_type=AgentTaskResult,
    )
    return task_id, handle


async def pending_approvals(
    handle: WorkflowHandle[Any, Any], count: int = 1
) -> list[PendingApproval]:
    async with asyncio.timeout(30):
        while True:
            try:
                state = await handle.query(AgentTaskWorkflow.state, result_type=TaskState)
            except (RPCError, WorkflowQueryFailedError):  # no worker has run it yet
                state = None
            if state is not None and len(state.pending_approvals) >= count:
                return state.pending_approvals
            await asyncio.sleep(0.1)


async def children_of(
    session_factory: async_sessionmaker[AsyncSession], task_id: str
) -> list[Task]:
    async with session_factory() as session:
        rows = await session.scalars(
            select(Task).where(Task.parent_task_id == task_id).order_by(Task.node)
        )
        return list(rows.all())


def tool_results(task: dict[str, Any]) -> list[str]:
    return [m["content"] for m in task["messages"] if m["role"] == "tool"]


async def read_task(api: httpx.AsyncClient, tenant: Tenant, task_id: str) -> dict[str, Any]:
    response = await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def echo(message: str) -> str:
    return f"{SCRIPTED_LABEL} You said: {message}"


@dataclass
class Desk:
    """A project with a worker running, where node runs start and are read back."""

    api: httpx.AsyncClient
    tenant: Tenant
    temporal_env: WorkflowEnvironment
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    async def agent(self, name: str, *, echoes: bool = False, **spec: Any) -> str:
        """An agent that calls the tools its message names, or that `echoes` it."""
        if echoes:
            spec["model"] = "scripted:echo"
        return await make_agent(self.api, self.tenant, tools=[], name=name, **spec)

    async def triage_and_billing(self, **edge: Any) -> tuple[str, WorkforceSpec]:
        """Billing (which echoes) and a graph where Triage may ask it, by an edge with these
        settings."""
        triage = await self.agent("Triage")
        billing = await self.agent("Billing", echoes=True)
        spec = workforce(
            {"triage": triage, "billing": billing}, {"from": "triage", "to": "billing", **edge}
        )
        return billing, spec

    async def start(
        self, spec: WorkforceSpec, message: str, params: dict[str, Any] | None = None
    ) -> tuple[str, WorkflowHandle[Any, AgentTaskResult]]:
        return await start_node(
            self.temporal_env, self.settings, self.tenant, spec, message, params
        )

    async def completed(
        self, task_id: str, handle: WorkflowHandle[Any, AgentTaskResult]
    ) -> dict[str, Any]:
        """The node run, once it has completed, as the API reads it."""
        result = await handle.result()
        assert result.status is TaskStatus.completed, result.error
        return await read_task(self.api, self.tenant, task_id)

    async def run(
        self, spec: WorkforceSpec, message: str, params: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Starts a node run and reads it once it has completed."""
        task_id, handle = await self.start(spec, message, params)
        return task_id, await self.completed(task_id, handle)

    async def children(self, task_id: str) -> list[Task]:
        return await children_of(self.sessions, task_id)

    async def event(self, task_id: str, kind: str) -> dict[str, Any]:
        """The data of the task's first event of this kind."""
        async with self.sessions() as session:
            rows = await event_repo.list_events(session=session, task_id=task_id)
        data: dict[str, Any] = next(row.data for row in rows if row.type == kind)
        return data


@pytest.fixture
def desk(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> Desk:
    return Desk(api, tenant, temporal_env, settings, session_factory)


async def test_a_node_run_answers_once_and_records_its_parent_and_node(desk: Desk):
    # An agent that would wait an hour for a follow-up: a node run completes at once.
    agent = await desk.agent("Helper", echoes=True, idle_timeout_seconds=3600)
    parent_id = str(uuid.uuid4())
    async with desk.sessions.begin() as session:
        await task_repo.create_task(
            session=session,
            task_id=parent_id,
            project_id=desk.tenant.project_id,
            agent_id=agent,
            first_message="the parent's message",
        )
    task_id = str(uuid.uuid4())
    handle = await desk.temporal_env.client.start_workflow(
        "AgentTaskWorkflow",
        AgentTaskInput(
            task_id=task_id,
            project_id=desk.tenant.project_id,
            agent_id=agent,
            message="what is the plan?",
            parent_task_id=parent_id,
            node="planner",
            single_turn=True,
        ),
        id=task_repo.workflow_id_for(task_id),
        task_queue=desk.settings.temporal_task_queue,
        result_type=AgentTaskResult,
    )
    result = await handle.result()

    assert result.status is TaskStatus.completed
    assert result.answer == f"{SCRIPTED_LABEL} You said: what is the plan?"
    async with desk.sessions() as session:
        row = await session.get(Task, task_id)
    assert row is not None
    assert (row.parent_task_id, row.node, row.kind, row.agent_id) == (
        parent_id,
        "planner",
        "agent-task",
        agent,
    )
    assert row.status == "completed"


def test_a_delegate_edge_gives_its_source_an_ask_tool_described_by_its_when():
    spec = workforce(
        {"triage": "a1", "billing": "a2", "legal": "a3"},
        {"from": "triage", "to": "billing", "when": "Questions about invoices and refunds"},
        {"from": "triage", "to": "legal", "approval": "agent_decides"},
        {"from": "billing", "to": "legal"},
    )
    task = AgentTaskInput(
        task_id="t", project_id="p", agent_id="a1", message="", workforce=spec, node="triage"
    )
    offered = callable_tools(task, AgentSpec(name="Triage"), {})

    assert list(offered) == ["ask_billing", "ask_legal"]
    billing = offered["ask_billing"].definition
    assert billing.description == "Questions about invoices and refunds"
    assert billing.parameters["required"] == ["message"]
    assert billing.parameters["properties"]["message"]["type"] == "string"
    assert NEEDS_APPROVAL_ARG not in billing.parameters["properties"]
    assert NEEDS_APPROVAL_ARG in offered["ask_legal"].definition.parameters["properties"]
    # Without a workforce node there is nothing to delegate to.
    plain = task.model_copy(update={"node": None})
    assert callable_tools(plain, AgentSpec(name="Triage"), {}) == {}


async def test_a_delegation_runs_the_target_in_a_child_task_and_returns_its_answer(
    desk: Desk,
):
    billing, spec = await desk.triage_and_billing(when="Billing questions")
    task_id, handle = await desk.start(spec, 'call ask_billing {"message": "refund order 7?"}')
    task = await desk.completed(task_id, handle)

    assert f"ask_billing: {echo('refund order 7?')}" in task["messages"][-1]["content"]
    assert tool_results(task) == [echo("refund order 7?")]
    # The child is a task of its own: the billing agent's, working for the caller's task.
    [child] = await desk.children(task_id)
    assert (child.node, child.agent_id, child.kind, child.status) == (
        "billing",
        billing,
        "agent-task",
        "completed",
    )
    child_task = await read_task(desk.api, desk.tenant, child.id)
    assert [m["content"] for m in child_task["messages"]] == [
        "refund order 7?",
        echo("refund order 7?"),
    ]
    # The caller's events say which task did the work.
    started = await desk.event(task_id, "tool.run.started")
    assert started["delegation"] is True and started["task_id"] == child.id
    completed = await desk.event(task_id, "tool.run.completed")
    assert completed["output"] == echo("refund order 7?")
    # In Temporal, the child hangs under its caller, named for the node.
    described = await desk.temporal_env.client.get_workflow_handle(child.workflow_id).describe()
    assert described.parent_id == handle.id
    assert await described.static_summary() == "delegation to billing"


async def test_two_delegations_of_one_turn_run_at_once(desk: Desk):
    triage = await desk.agent("Triage")
    helper = await desk.agent("Helper", echoes=True)
    spec = workforce(
        {"triage": triage, "billing": helper, "shipping": helper},
        {"from": "triage", "to": "billing"},
        {"from": "triage", "to": "shipping"},
    )
    task_id, handle = await desk.start(
        spec,
        'call ask_billing {"message": "the invoice"}\ncall ask_shipping {"message": "the parcel"}',
    )
    task = await desk.completed(task_id, handle)

    assert tool_results(task) == [echo("the invoice"), echo("the parcel")]
    children = await desk.children(task_id)
    assert [(c.node, c.status) for c in children] == [
        ("billing", "completed"),
        ("shipping", "completed"),
    ]
    # Both children were started before either finished.
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    started = [
        i
        for i, k in enumerate(kinds)
        if k == HistoryEventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]
    finished = [
        i
        for i, k in enumerate(kinds)
        if k == HistoryEventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED
    ]
    assert len(started) == 2 and len(finished) == 2
    assert max(started) < min(finished)


async def test_a_required_edge_waits_for_approval_and_a_rejection_is_told_to_the_caller(
    desk: Desk,
):
    _, spec = await desk.triage_and_billing(approval="required")
    task_id, handle = await desk.start(spec, 'call ask_billing {"message": "refund it all"}')
    [pending] = await pending_approvals(handle)
    assert (pending.tool, pending.arguments) == ("ask_billing", {"message": "refund it all"})
    waiting = await read_task(desk.api, desk.tenant, task_id)
    assert waiting["status"] == "waiting-approval"
    assert [p["tool"] for p in waiting["pending_approvals"]] == ["ask_billing"]

    rejected = await desk.api.post(
        desk.tenant.url(f"/tasks/{task_id}/approvals/{pending.call_id}"),
        json={"approve": False, "reason": "refunds need a manager"},
        headers=desk.tenant.headers,
    )
    assert rejected.status_code == 200, rejected.text
    task = await desk.completed(task_id, handle)

    assert tool_results(task) == ["The user rejected this call: refunds need a manager."]
    assert await desk.children(task_id) == []


async def test_after_max_auto_runs_a_delegation_waits_for_approval(desk: Desk):
    _, spec = await desk.triage_and_billing(max_auto_runs=1)
    task_id, handle = await desk.start(
        spec, 'call ask_billing {"message": "first"}\ncall ask_billing {"message": "second"}'
    )
    # The first runs on its own; the second, over the cap, waits for a person.
    [pending] = await pending_approvals(handle)
    assert (pending.tool, pending.arguments) == ("ask_billing", {"message": "second"})
    approved = await desk.api.post(
        desk.tenant.url(f"/tasks/{task_id}/approvals/{pending.call_id}"),
        json={"approve": True, "arguments": {"message": "second, edited"}},
        headers=desk.tenant.headers,
    )
    assert approved.status_code == 200, approved.text
    task = await desk.completed(task_id, handle)

    assert tool_results(task) == [echo("first"), echo("second, edited")]
    assert len(await desk.children(task_id)) == 2


async def test_delegations_nest_only_so_deep(desk: Desk):
    # An agent that delegates to itself, told to do it one level more than allowed.
    looper = await desk.agent("Looper")
    spec = workforce({"looper": looper}, {"from": "looper", "to": "looper"})
    message = 'call ask_looper {"message": "the bottom"}'
    for _ in range(MAX_DELEGATION_DEPTH):
        message = "call ask_looper " + json.dumps({"message": message})
    task_id, _ = await desk.run(spec, message)

    chain = [task_id]
    while children := await desk.children(chain[-1]):
        [child] = children
        chain.append(child.id)
    assert len(chain) == MAX_DELEGATION_DEPTH + 1
    deepest = await read_task(desk.api, desk.tenant, chain[-1])
    assert deepest["status"] == "completed"
    [refused] = tool_results(deepest)
    assert refused.startswith("Error: the tool ask_looper failed:")
    assert f"at most {MAX_DELEGATION_DEPTH} deep" in refused


async def test_cancelling_the_caller_cancels_the_delegation_it_waits_for(desk: Desk):
    triage = await desk.agent("Triage")
    billing = await desk.agent("Billing")
    ledger = await desk.agent("Ledger", echoes=True)
    spec = workforce(
        {"triage": triage, "billing": billing, "ledger": ledger},
        {"from": "triage", "to": "billing"},
        {"from": "billing", "to": "ledger", "approval": "required"},
    )
    inner = 'call ask_ledger {"message": "book it"}'
    task_id, handle = await desk.start(spec, "call ask_billing " + json.dumps({"message": inner}))
    # The billing agent's own delegation waits for approval in the billing task.
    [child] = await _eventually_children(desk.sessions, task_id)
    child_handle = desk.temporal_env.client.get_workflow_handle(child.workflow_id)
    [pending] = await pending_approvals(child_handle)
    assert pending.tool == "ask_ledger"

    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    async with asyncio.timeout(30):
        while (await child_handle.describe()).status is WorkflowExecutionStatus.RUNNING:
            await asyncio.sleep(0.1)
    assert (await child_handle.describe()).status is WorkflowExecutionStatus.CANCELED
    assert (await read_task(desk.api, desk.tenant, child.id))["status"] == "cancelled"
    assert (await read_task(desk.api, desk.tenant, task_id))["status"] == "cancelled"


async def _eventually_children(
    session_factory: async_sessionmaker[AsyncSession], task_id: str
) -> list[Task]:
    async with asyncio.timeout(30):
        while not (children := await children_of(session_factory, task_id)):
            await asyncio.sleep(0.1)
    return children


async def test_a_delegation_that_cannot_run_is_a_tool_error_the_caller_reads(desk: Desk):
    billing, spec = await desk.triage_and_billing()
    # The graph was pinned before the billing agent was deleted.
    deleted = await desk.api.delete(
        desk.tenant.url(f"/agents/{billing}"), headers=desk.tenant.headers
    )
    assert deleted.status_code == 204, deleted.text
    task_id, task = await desk.run(
        spec, 'call ask_billing {"message": "hello?"}\ncall ask_billing {"message": ""}'
    )

    assert tool_results(task) == [
        f"Error: the tool ask_billing failed: agent {billing} not found",
        "Error: invalid arguments for ask_billing: message must be a non-empty text",
    ]
    failed = await desk.event(task_id, "tool.run.failed")
    assert failed["tool"] == "ask_billing"


async def test_a_delegation_never_runs_another_projects_agent(desk: Desk, other_tenant: Tenant):
    triage = await desk.agent("Triage")
    theirs = await make_agent(
        desk.api, other_tenant, tools=[], name="Theirs", model="scripted:echo"
    )
    spec = workforce({"triage": triage, "theirs": theirs}, {"from": "triage", "to": "theirs"})
    _, task = await desk.run(spec, 'call ask_theirs {"message": "your secrets?"}')

    assert tool_results(task) == [f"Error: the tool ask_theirs failed: agent {theirs} not found"]
    async with desk.sessions() as session:
        ran = await session.scalars(select(Task).where(Task.agent_id == theirs))
        assert list(ran.all()) == []


async def test_a_delegation_starts_with_the_params_its_own_agent_declares(desk: Desk):
    triage = await desk.agent("Triage")
    billing = await desk.agent(
        "Billing",
        echoes=True,
        system_prompt="Answer in a {{ params.tone }} tone; currency {{ params.currency }}.",
        params=[
            {"name": "tone", "type": "text"},
            {"name": "currency", "type": "text", "default": "EUR"},
        ],
    )
    legal = await desk.agent("Legal", params=[{"name": "case", "type": "text"}])
    spec = workforce(
        {"triage": triage, "billing": billing, "legal": legal},
        {"from": "triage", "to": "billing"},
        {"from": "triage", "to": "legal"},
    )
    task_id, task = await desk.run(
        spec,
        'call ask_billing {"message": "my invoice"}\ncall ask_legal {"message": "can I sue?"}',
        params={"tone": "friendly", "customer": "ACME"},
    )

    assert tool_results(task) == [
        echo("my invoice"),
        "Error: the tool ask_legal failed: params: param 'case': required",
    ]
    [child] = await desk.children(task_id)
    assert child.node == "billing"
    assert child.params == {"tone": "friendly", "currency": "EUR"}


async def test_a_same_task_delegation_continues_the_callers_conversation(desk: Desk):
    billing, spec = await desk.triage_and_billing(task="same")
    ask = 'call ask_billing {"message": "and the refund?"}'
    task_id, handle = await desk.start(spec, ask)
    task = await desk.completed(task_id, handle)

    [child] = await desk.children(task_id)
    assert (child.node, child.agent_id, child.status) == ("billing", billing, "completed")
    child_task = await read_task(desk.api, desk.tenant, child.id)
    first = child_task["messages"][0]["content"]
    # The target read what was said so far, the call that asked it included, then the ask.
    assert first == (
        "You continue a conversation triage was having.\n\n"
        f"The conversation so far:\nuser: {ask}\n"
        f"triage: {SCRIPTED_LABEL} Calling ask_billing.\n"
        'triage called ask_billing {"message": "and the refund?"}\n\n'
        "triage asks you:\nand the refund?"
    )
    assert tool_results(task) == [echo(first)]
    started = await desk.event(task_id, "tool.run.started")
    assert (started["task"], started["task_id"]) == ("same", child.id)
    described = await desk.temporal_env.client.get_workflow_handle(child.workflow_id).describe()
    assert await described.static_summary() == "delegation to billing (same conversation)"


async def test_same_task_delegations_of_one_turn_run_one_at_a_time(desk: Desk):
    triage = await desk.agent("Triage")
    helper = await desk.agent("Helper", echoes=True)
    spec = workforce(
        {"triage": triage, "billing": helper, "shipping": helper},
        {"from": "triage", "to": "billing", "task": "same"},
        {"from": "triage", "to": "shipping", "task": "same"},
    )
    task_id, handle = await desk.start(
        spec,
        'call ask_billing {"message": "the invoice"}\ncall ask_shipping {"message": "the parcel"}',
    )
    task = await desk.completed(task_id, handle)

    results = tool_results(task)
    assert len(results) == 2
    assert results[0].endswith("triage asks you:\nthe invoice")
    assert results[1].endswith("triage asks you:\nthe parcel")
    assert [(c.node, c.status) for c in await desk.children(task_id)] == [
        ("billing", "completed"),
        ("shipping", "completed"),
    ]
    # The second started only once the first had finished.
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    started = [
        i
        for i, k in enumerate(kinds)
        if k == HistoryEventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]
    finished = [
        i
        for i, k in enumerate(kinds)
        if k == HistoryEventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED
    ]
    assert len(started) == 2 and len(finished) == 2
    assert started[0] < finished[0] < started[1] < finished[1]


async def test_a_task_never_continues_another_projects_conversation(
    desk: Desk, other_tenant: Tenant
):
    theirs = await make_agent(desk.api, other_tenant, tools=[], name="Theirs")
    their_task = str(uuid.uuid4())
    async with desk.sessions.begin() as session:
        await task_repo.create_task(
            session=session,
            task_id=their_task,
            project_id=other_tenant.project_id,
            agent_id=theirs,
            first_message="their private message",
        )
    mine = await desk.agent("Mine", echoes=True)
    task_id = str(uuid.uuid4())
    handle = await desk.temporal_env.client.start_workflow(
        "AgentTaskWorkflow",
        AgentTaskInput(
            task_id=task_id,
            project_id=desk.tenant.project_id,
            agent_id=mine,
            message="what did they say?",
            conversation_of=their_task,
            single_turn=True,
        ),
        id=task_repo.workflow_id_for(task_id),
        task_queue=desk.settings.temporal_task_queue,
        result_type=AgentTaskResult,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert f"task {their_task} not found" in str(failed.value.cause.cause)
    async with desk.sessions() as session:
        messages = await task_repo.list_messages(session=session, task_id=task_id)
    assert all("their private message" not in m.content for m in messages)
