"""Tasks and their messages: the projection the API reads, written by the task's activities."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.idempotent import insert_once
from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import Task, TaskMessage, utcnow
from baton.domain.accounts import Principal
from baton.domain.llm import Message, MessageRole, TokenUsage, ToolCall
from baton.domain.tasks import TaskStatus, task_workflow_id
from baton.errors import NotFound


def workflow_id_for(task_id: str) -> str:
    return task_workflow_id(task_id)


async def create_task(
    *,
    session: AsyncSession,
    task_id: str,
    project_id: str,
    agent_id: str,
    first_message: str,
    user_group_id: str | None = None,
    agent_version: int | None = None,
    params: dict[str, Any] | None = None,
    source: str | None = None,
) -> Task:
    task = Task(
        id=task_id,
        source=source,
        agent_version=agent_version,
        params=params,
        project_id=project_id,
        agent_id=agent_id,
        user_group_id=user_group_id,
        workflow_id=workflow_id_for(task_id),
        status=TaskStatus.queued.value,
    )
    session.add(task)
    await session.flush()
    session.add(TaskMessage(task_id=task_id, seq=0, role="user", content=first_message))
    await session.flush()
    return task


async def set_agent_version(*, session: AsyncSession, task_id: str, version: int) -> None:
    await session.execute(update(Task).where(Task.id == task_id).values(agent_version=version))


async def get_task_by_id(*, session: AsyncSession, task_id: str) -> Task:
    """For the platform's own code paths; API reads go through `get_task`, which checks
    who is asking."""
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def _visible_tasks(principal: Principal, project_id: str) -> Select[Task]:
    query = select(Task).where(Task.project_id == project_id)
    if principal.is_user_group:
        query = query.where(Task.user_group_id == principal.user_group_id)
    return query


async def get_task(
    *, session: AsyncSession, principal: Principal, project_id: str, task_id: str
) -> Task:
    task = (
        await session.scalars(_visible_tasks(principal, project_id).where(Task.id == task_id))
    ).one_or_none()
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


async def list_tasks(
    *,
    session: AsyncSession,
    principal: Principal,
    project_id: str,
    agent_id: str | None = None,
    workforce_id: str | None = None,
    status: TaskStatus | None = None,
    statuses: Collection[TaskStatus] | None = None,
    page: PageRequest = ALL,
) -> Paged[Task]:
    """Newest first; `statuses`, when given, keeps the tasks in any of them."""
    query = _visible_tasks(principal, project_id)
    if agent_id is not None:
        query = query.where(Task.agent_id == agent_id)
    if workforce_id is not None:
        query = query.where(Task.workforce_id == workforce_id)
    if status is not None:
        query = query.where(Task.status == status.value)
    if statuses is not None:
        query = query.where(Task.status.in_([s.value for s in statuses]))
    order = (Key(Task.created_at, descending=True), Task.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def list_messages(
    *, session: AsyncSession, task_id: str, before: int | None = None
) -> list[Message]:
    """The task's messages in order; with `before`, only those whose seq is lower."""
    query = select(TaskMessage).where(TaskMessage.task_id == task_id)
    if before is not None:
        query = query.where(TaskMessage.seq < before)
    rows = await session.scalars(query.order_by(TaskMessage.seq))
    return [_message(row) for row in rows]


async def get_message(*, session: AsyncSession, task_id: str, seq: int) -> Message | None:
    row = await session.scalar(
        select(TaskMessage).where(TaskMessage.task_id == task_id, TaskMessage.seq == seq)
    )
    return None if row is None else _message(row)


def _message(row: TaskMessage) -> Message:
    return Message(
        role=MessageRole(row.role),
        content=row.content,
        tool_calls=[ToolCall.model_validate(c) for c in row.tool_calls or []],
        tool_call_id=row.tool_call_id,
        name=row.name,
    )


async def count_messages(*, session: AsyncSession, task_id: str) -> int:
    query = select(func.count()).select_from(TaskMessage).where(TaskMessage.task_id == task_id)
    return (await session.execute(query)).scalar_one()


async def set_status(
    *, session: AsyncSession, task_id: str, status: TaskStatus, error: str | None = None
) -> None:
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    task.status = status.value
    task.error = error
    task.updated_at = utcnow()


async def close_open_task(
    *, session: AsyncSession, workflow_id: str, status: TaskStatus, error: str
) -> str | None:
    """Gives the task of `workflow_id` a final status unless it already has one; the task's
    id if it wrote, None otherwise (its workflow ended it properly, or it is unknown)."""
    open_statuses = [s.value for s in TaskStatus if not s.is_final]
    result = await session.execute(
        update(Task)
        .where(Task.workflow_id == workflow_id, Task.status.in_(open_statuses))
        .values(status=status.value, error=error, updated_at=utcnow())
        .returning(Task.id)
    )
    return result.scalar_one_or_none()


async def put_message(
    *,
    session: AsyncSession,
    task_id: str,
    seq: int,
    message: Message,
    usage: TokenUsage | None = None,
) -> bool:
    """Writes message `seq` once, adding its token usage to the task's totals: a repeated
    call (an activity retry) changes nothing. True when the message was new."""
    values = {
        "task_id": task_id,
        "seq": seq,
        "role": message.role.value,
        "content": message.content,
        "tool_calls": [c.model_dump(mode="json") for c in message.tool_calls] or None,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "created_at": utcnow(),
    }
    new = await insert_once(session, TaskMessage, values, key=["task_id", "seq"]) > 0
    if new and usage is not None:
        await session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(
                input_tokens=Task.input_tokens + usage.input_tokens,
                output_tokens=Task.output_tokens + usage.output_tokens,
                cached_input_tokens=Task.cached_input_tokens + usage.cached_input_tokens,
            )
        )
    return new


async def ensure_task(
    *,
    session: AsyncSession,
    task_id: str,
    workflow_id: str,
    project_id: str,
    agent_id: str,
    first_message: str,
    user_group_id: str | None,
    params: dict[str, Any] | None = None,
    parent_task_id: str | None = None,
    node: str | None = None,
) -> None:
    """The task's row and first message, unless the API already wrote them (a scheduled
    start has no API request before it; a workforce node's or a delegation's task is started
    by its parent's workflow, with the parent and the node it runs)."""
    now = utcnow()
    await insert_once(
        session,
        Task,
        {
            "id": task_id,
            "project_id": project_id,
            "agent_id": agent_id,
            "user_group_id": user_group_id,
            "params": params,
            "parent_task_id": parent_task_id,
            "node": node,
            "workflow_id": workflow_id,
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
        seq=0,
        message=Message(role=MessageRole.user, content=first_message),
    )
