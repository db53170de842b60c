"""Workforce tasks: starting one, and what the task routes (api/routes/tasks.py) show and
do differently for one: its conversation with authors and handovers, its node runs, and
approvals routed to the node task that waits for them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Editor, ProjectDep, SessionDep, SettingsDep, TemporalDep, get_project
from api.schemas.tasks import TaskCreated, WorkforceMessagePublic, WorkforceTaskCreate
from baton.db.repositories import accounts
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import workforce_tasks as workforce_task_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Task, TaskMessage
from baton.domain.tasks import PendingApproval, TaskStatus
from baton.domain.workforce_tasks import (
    DELEGATION_ROLE,
    HANDOVER_ROLE,
    WORKFORCE_TASK_KIND,
    NodeRun,
)
from baton.services.workforce_tasks import start_workforce_task

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/workforces",
    tags=["workforces"],
    dependencies=[Depends(get_project)],
)


@router.post("/{workforce_id}/tasks", status_code=status.HTTP_201_CREATED)
async def start_task(
    workforce_id: str,
    body: WorkforceTaskCreate,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    temporal_client: TemporalDep,
    settings: SettingsDep,
) -> TaskCreated:
    """Starts a task at the workforce's entry node, on the workforce's current version."""
    workforce = await workforce_repo.get_workforce(
        session=session, project_id=project.id, workforce_id=workforce_id
    )
    user_group_id = None
    if body.user_group is not None:
        group = await accounts.find_user_group(
            session=session,
            org_id=project.org_id,
            provided_id=body.user_group,
            environment=body.user_group_environment,
        )
        user_group_id = group.id
    task = await start_workforce_task(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        workforce=workforce,
        spec=workforce_repo.workforce_spec(workforce),
        message=body.message,
        params=body.params,
        user_group_id=user_group_id,
    )
    return TaskCreated(
        id=task.id,
        workflow_id=task.workflow_id,
        status=TaskStatus(task.status),
        temporal_ui_url=settings.temporal_ui_link(task.workflow_id),
    )


def is_workforce_task(task: Task) -> bool:
    return task.kind == WORKFORCE_TASK_KIND


async def messages(session: AsyncSession, task: Task) -> list[WorkforceMessagePublic]:
    rows = await workforce_task_repo.list_messages(session=session, task_id=task.id)
    return [_message(row) for row in rows]


def _message(row: TaskMessage) -> WorkforceMessagePublic:
    if row.role == HANDOVER_ROLE:
        return WorkforceMessagePublic(
            type="handover", role=row.role, content=row.content, from_=row.author, to=row.name
        )
    if row.role == DELEGATION_ROLE:
        return WorkforceMessagePublic(
            type="delegation",
            role=row.role,
            content=row.content,
            from_=row.author,
            to=row.name,
            task_id=row.tool_call_id,
        )
    return WorkforceMessagePublic(
        type="message", role=row.role, content=row.content, author=row.author
    )


async def nodes(session: AsyncSession, task: Task) -> list[NodeRun]:
    return await workforce_task_repo.node_runs(session=session, task_id=task.id)


async def pending_approvals(session: AsyncSession, task: Task) -> list[PendingApproval]:
    waiting = await workforce_task_repo.pending_approvals(session=session, task_id=task.id)
    return [approval for _, approval in waiting]


async def approval_holders(session: AsyncSession, task: Task, call_id: str) -> list[Task]:
    """The node tasks that may hold `call_id` waiting for approval, newest first (call ids
    are unique per node task only)."""
    waiting = await workforce_task_repo.pending_approvals(session=session, task_id=task.id)
    holders = [holder for holder, approval in reversed(waiting) if approval.call_id == call_id]
    return [await task_repo.get_task_by_id(session=session, task_id=h) for h in holders]
