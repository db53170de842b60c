"""Reading tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, ProjectDep, SessionDep, SettingsDep
from api.schemas.tasks import TaskPublic, TaskSummary
from baton.db.repositories import tasks as task_repo
from baton.domain.tasks import TaskStatus

router = APIRouter(prefix="/api/v1/projects/{project_id}/tasks", tags=["tasks"])


@router.get("")
async def list_tasks(
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    agent_id: str | None = None,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[TaskSummary]:
    tasks = await task_repo.list_tasks(
        session=session,
        principal=principal,
        project_id=project.id,
        agent_id=agent_id,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [
        TaskSummary(
            id=t.id,
            agent_id=t.agent_id,
            workflow_id=t.workflow_id,
            status=TaskStatus(t.status),
            error=t.error,
            temporal_ui_url=settings.temporal_ui_link(t.workflow_id),
            created_at=t.created_at,
            updated_at=t.updated_at,
        )
        for t in tasks
    ]


@router.get("/{task_id}")
async def get_task(
    task_id: str,
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> TaskPublic:
    task = await task_repo.get_task(
        session=session, principal=principal, project_id=project.id, task_id=task_id
    )
    return TaskPublic(
        id=task.id,
        agent_id=task.agent_id,
        workflow_id=task.workflow_id,
        status=TaskStatus(task.status),
        error=task.error,
        temporal_ui_url=settings.temporal_ui_link(task.workflow_id),
        messages=await task_repo.list_messages(session=session, task_id=task.id),
        created_at=task.created_at,
        updated_at=task.updated_at,
    )
