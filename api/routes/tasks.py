"""Tasks: reading them, follow-up messages, tool-call approvals, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    Editor,
    PageDep,
    PrincipalDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TaskWriter,
    TemporalDep,
    get_project,
)
from api.routes import workforce_tasks
from api.schemas.paging import Page
from api.schemas.tasks import (
    ApprovalDecision,
    MessageCreate,
    TaskPublic,
    TaskSummary,
    Usage,
    WorkforceMessagePublic,
)
from api.templates import api_budget, off_loop
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import cost as cost_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tasks as task_repo
from baton.db.tables import Task
from baton.domain.accounts import Principal
from baton.domain.agents import render_with_params
from baton.domain.capacity import WAITING_FOR_CAPACITY, Capacity
from baton.domain.tasks import Decision, Message, PendingApproval, TaskStatus, UserMessage
from baton.domain.workforce_tasks import NodeRun
from baton.errors import Conflict, NotFound, ServiceUnavailable
from baton.services import closed_runs
from baton.templating import TemplateError, is_template
from workflows.agent_task import AgentTaskWorkflow

# How long a follow-up waits for the task's worker to accept it.
MESSAGE_ACCEPT_TIMEOUT_S = 20

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/tasks",
    tags=["tasks"],
    dependencies=[Depends(get_project)],
)


@router.get("")
async def list_tasks(
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    page: PageDep,
    agent_id: str | None = None,
    workforce_id: str | None = None,
    status: TaskStatus | None = None,
) -> Page[TaskSummary]:
    """Newest first; a user group token sees only its own tasks. Agent tasks and workforce
    tasks (`kind`); a workforce's node runs are tasks too, with their `parent_task_id`."""
    tasks = await task_repo.list_tasks(
        session=session,
        principal=principal,
        project_id=project.id,
        agent_id=agent_id,
        workforce_id=workforce_id,
        status=status,
        page=page,
    )
    return Page[TaskSummary].of(
        tasks,
        lambda t: TaskSummary(
            id=t.id,
            agent_id=t.agent_id,
            kind=t.kind,
            workforce_id=t.workforce_id,
            parent_task_id=t.parent_task_id,
            node=t.node,
            source=t.source,
            workflow_id=t.workflow_id,
            status=TaskStatus(t.status),
            error=t.error,
            temporal_ui_url=settings.temporal_ui_link(t.workflow_id),
            created_at=t.created_at,
            updated_at=t.updated_at,
        ),
    )


@router.get("/{task_id}")
async def get_task(
    task_id: str,
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> TaskPublic:
    task = await task_repo.get_task(
        session=session, principal=principal, project_id=project.id, task_id=task_id
    )
    if not TaskStatus(task.status).is_final and await closed_runs.settle_if_closed(
        client=temporal_client,
        session=session,
        workflow_id=task.workflow_id,
        updated_at=task.updated_at,
    ):
        await session.commit()
        await session.refresh(task)
    pending: list[PendingApproval] = []
    messages: list[Message | WorkforceMessagePublic] = []
    nodes: list[NodeRun] = []
    if workforce_tasks.is_workforce_task(task):
        pending = await workforce_tasks.pending_approvals(session, task)
        messages += await workforce_tasks.messages(session, task)
        nodes = await workforce_tasks.nodes(session, task)
    else:
        if task.status == TaskStatus.waiting_approval.value:
            pending = await _pending_approvals(temporal_client, task)
        messages += await task_repo.list_messages(session=session, task_id=task.id)
    return TaskPublic(
        id=task.id,
        agent_id=task.agent_id,
        kind=task.kind,
        workforce_id=task.workforce_id,
        workforce_version=task.workforce_version,
        parent_task_id=task.parent_task_id,
        node=task.node,
        source=task.source,
        nodes=nodes,
        agent_version=task.agent_version,
        params=task.params or {},
        welcome_message=await _welcome_message(session, task),
        workflow_id=task.workflow_id,
        status=TaskStatus(task.status),
        error=task.error,
        details=_waiting_for(task),
        temporal_ui_url=settings.temporal_ui_link(task.workflow_id),
        messages=messages,
        usage=Usage(input_tokens=task.input_tokens, output_tokens=task.output_tokens),
        cost=await cost_repo.task_cost(session=session, task_id=task.id),
        pending_approvals=pending,
        created_at=task.created_at,
        updated_at=task.updated_at,
    )


@router.post("/{task_id}/messages", status_code=status.HTTP_202_ACCEPTED)
async def send_message(
    task_id: str,
    body: MessageCreate,
    project: ProjectDep,
    session: SessionDep,
    principal: TaskWriter,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    """A follow-up message: queued while the agent works, answered when it is free. The
    task's workflow accepts it (an update, not a signal), so a 202 means it will be answered;
    a task that is ending refuses it with a 409."""
    task = await _open_task(session, principal, project.id, task_id)
    await post_follow_up(temporal_client, task, body.message)
    return {"status": "queued"}


async def post_follow_up(temporal_client: Client, task: Task, content: str) -> None:
    """Hands a follow-up to the task's workflow, which accepts it once it will answer it: 409
    when the task is ending, 503 when its worker does not take it in time (an email reply
    to a task comes here too)."""
    handle = temporal_client.get_workflow_handle(task.workflow_id)
    try:
        async with asyncio.timeout(MESSAGE_ACCEPT_TIMEOUT_S):
            await _temporal(
                handle.execute_update(AgentTaskWorkflow.post_message, UserMessage(content=content))
            )
    except WorkflowUpdateFailedError as exc:
        raise Conflict("the task is ending and takes no more messages; start a new task") from exc
    except TimeoutError as exc:
        raise ServiceUnavailable(
            "the task's worker did not take the message in time; it may still be delivered, "
            "so read the task before sending it again"
        ) from exc


@router.post("/{task_id}/approvals/{call_id}")
async def decide(
    task_id: str,
    call_id: str,
    body: ApprovalDecision,
    project: ProjectDep,
    session: SessionDep,
    principal: Editor,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    """Approve a waiting tool call (optionally with edited arguments) or reject it with a
    reason the model is told."""
    task = await _open_task(session, principal, project.id, task_id)
    decision = Decision(
        call_id=call_id, approve=body.approve, arguments=body.arguments, reason=body.reason
    )
    # A workforce task's calls wait in the node tasks that made them.
    holders = (
        await workforce_tasks.approval_holders(session, task, call_id)
        if workforce_tasks.is_workforce_task(task)
        else [task]
    )
    for holder in holders:
        handle = temporal_client.get_workflow_handle(holder.workflow_id)
        try:
            await _temporal(handle.execute_update(AgentTaskWorkflow.decide, decision))
        except WorkflowUpdateFailedError:
            continue
        return {"status": "approved" if body.approve else "rejected"}
    raise NotFound(f"no tool call {call_id!r} of this task is waiting for approval")


@router.post("/{task_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_task(
    task_id: str,
    project: ProjectDep,
    session: SessionDep,
    principal: Editor,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    task = await _open_task(session, principal, project.id, task_id)
    await _temporal(temporal_client.get_workflow_handle(task.workflow_id).cancel())
    return {"status": "cancelling"}


async def _open_task(
    session: AsyncSession, principal: Principal, project_id: str, task_id: str
) -> Task:
    task = await task_repo.get_task(
        session=session, principal=principal, project_id=project_id, task_id=task_id
    )
    if TaskStatus(task.status).is_final:
        raise Conflict(f"the task has already ended ({task.status})")
    return task


def _waiting_for(task: Task) -> str | None:
    if task.capacity == Capacity.waiting and task.status == TaskStatus.queued.value:
        return WAITING_FOR_CAPACITY
    return None


async def _welcome_message(session: AsyncSession, task: Task) -> str:
    """The welcome message of the agent version the task runs, its params filled in."""
    if task.agent_version is None or task.agent_id is None:
        return ""
    spec = await agent_repo.version_spec(
        session=session, agent_id=task.agent_id, version=task.agent_version
    )
    if spec is None:
        return ""
    snippets = await snippet_repo.snippet_values(
        session=session, project_id=task.project_id, names=spec.snippet_names()
    )
    text, params = spec.welcome_message, task.params or {}
    if not is_template(text):
        return text

    def render() -> str:
        try:
            return render_with_params(text, params, snippets, budget=api_budget())
        except TemplateError:
            return text

    return await off_loop(render)


async def _pending_approvals(temporal_client: Client, task: Task) -> list[PendingApproval]:
    handle = temporal_client.get_workflow_handle(task.workflow_id)
    try:
        async with asyncio.timeout(2):
            state = await handle.query(AgentTaskWorkflow.state)
    except (RPCError, WorkflowQueryFailedError, TimeoutError):
        return []
    return state.pending_approvals


T = TypeVar("T")


async def _temporal(call: Awaitable[T]) -> T:
    try:
        return await call
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the task's workflow is no longer running") from exc
        raise ServiceUnavailable("Temporal is unavailable; try again") from exc
