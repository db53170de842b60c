"""Workforce tasks: their rows and conversations, their node runs (read from their events),
and the approvals their node tasks wait for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.idempotent import insert_once
from baton.db.tables import Task, TaskEvent, TaskMessage, utcnow
from baton.domain.events import EventType
from baton.domain.tasks import PendingApproval, TaskStatus
from baton.domain.workforce_tasks import (
    WORKFORCE_TASK_KIND,
    NodeRun,
    NodeRunStatus,
    WorkforceMessage,
    workforce_task_workflow_id,
)

_NODE_EVENTS = [EventType.node_started, EventType.node_completed, EventType.node_failed]
_APPROVAL_EVENTS = [EventType.tool_approval_requested, EventType.tool_approval_decided]


async def ensure_workforce_task(
    *,
    session: AsyncSession,
    task_id: str,
    project_id: str,
    workforce_id: str,
    workforce_version: int,
    first_message: str,
    user_group_id: str | None,
    params: dict[str, Any] | None = None,
    workflow_id: str | None = None,
) -> bool:
    """The task's row and first message, unless they exist; True when the row was new. A
    scheduled run's workflow id is Temporal's; any other is `workforce-task-<task id>`."""
    now = utcnow()
    new = await insert_once(
        session,
        Task,
        {
            "id": task_id,
            "project_id": project_id,
            "agent_id": None,
            "kind": WORKFORCE_TASK_KIND,
            "workforce_id": workforce_id,
            "workforce_version": workforce_version,
            "user_group_id": user_group_id,
            "params": params,
            "workflow_id": workflow_id or workforce_task_workflow_id(task_id),
            "status": TaskStatus.queued.value,
            "input_tokens": 0,
            "output_tokens": 0,
            "created_at": now,
            "updated_at": now,
        },
        key=["id"],
    )
    await put_message(
        session=session,
        task_id=task_id,
        message=WorkforceMessage(seq=0, role="user", content=first_message),
    )
    return new > 0


async def put_message(*, session: AsyncSession, task_id: str, message: WorkforceMessage) -> bool:
    """Writes message `seq` once; True when it was new."""
    values = {
        "task_id": task_id,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "author": message.author,
        "name": message.to,
        "tool_call_id": message.task_id,
        "created_at": utcnow(),
    }
    return await insert_once(session, TaskMessage, values, key=["task_id", "seq"]) > 0


async def list_messages(*, session: AsyncSession, task_id: str) -> list[TaskMessage]:
    rows = await session.scalars(
        select(TaskMessage).where(TaskMessage.task_id == task_id).order_by(TaskMessage.seq)
    )
    return list(rows)


async def node_runs(*, session: AsyncSession, task_id: str) -> list[NodeRun]:
    """Each node run of the task, in order, with its latest status."""
    rows = await session.scalars(
        select(TaskEvent)
        .where(TaskEvent.task_id == task_id, TaskEvent.type.in_([t.value for t in _NODE_EVENTS]))
        .order_by(TaskEvent.seq)
    )
    runs: dict[int, NodeRun] = {}
    for row in rows:
        data = row.data
        if "task_id" in data:
            continue  # mirrored from a node's own task: not a run of this task's nodes
        number = int(data.get("run", 0))
        if row.type == EventType.node_started.value:
            runs[number] = NodeRun(
                run=number,
                node=str(data.get("node", "")),
                type=str(data.get("type", "")),
                status=NodeRunStatus.running,
                task_id=data.get("node_task_id"),
                run_id=data.get("run_id"),
            )
            continue
        run = runs.get(number)
        if run is None:
            continue
        if row.type == EventType.node_completed.value:
            run.status = NodeRunStatus.completed
            run.output = data.get("output")
            run.branch = data.get("branch")
        else:
            run.status = NodeRunStatus.failed
            run.error = data.get("error")
    return list(runs.values())


async def pending_approvals(
    *, session: AsyncSession, task_id: str
) -> list[tuple[str, PendingApproval]]:
    """The tool calls the task's node tasks wait on, with the task that holds each: asked
    in the events mirrored into this task's log and not decided since."""
    rows = await session.scalars(
        select(TaskEvent)
        .where(
            TaskEvent.task_id == task_id,
            TaskEvent.type.in_([t.value for t in _APPROVAL_EVENTS]),
        )
        .order_by(TaskEvent.seq)
    )
    waiting: dict[tuple[str, str], PendingApproval] = {}
    for row in rows:
        holder, call_id = row.data.get("task_id"), row.data.get("call_id")
        if not isinstance(holder, str) or not isinstance(call_id, str):
            continue
        if row.type == EventType.tool_approval_requested.value:
            waiting[(holder, call_id)] = PendingApproval.model_validate(row.data)
        else:
            waiting.pop((holder, call_id), None)
    if not waiting:
        return []
    open_holders = set(
        await session.scalars(
            select(Task.id).where(
                Task.id.in_({holder for holder, _ in waiting}),
                Task.status.in_([s.value for s in TaskStatus if not s.is_final]),
            )
        )
    )
    return [(holder, p) for (holder, _), p in waiting.items() if holder in open_holders]
