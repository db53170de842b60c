"""Starting a workforce task: the row first (the workflow's activities write to it), then the
workflow, started by its registered name (tests/test_services.py checks it against
`WorkforceWorkflow`'s definition)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from baton import temporal
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import workforce_tasks as workforce_task_repo
from baton.db.tables import Task, Workforce
from baton.domain.tasks import TaskStatus
from baton.domain.workforce_tasks import (
    WORKFORCE_TASK_KIND,
    WorkforceTaskInput,
    agent_node_params,
)
from baton.domain.workforces import AgentNode, WorkforceSpec
from baton.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from baton.services.tasks import NOT_STARTED, task_summary
from baton.settings import Settings

logger = logging.getLogger("baton.workforce_tasks")

# `@workflow.defn(name=...)` of workflows.workforce.WorkforceWorkflow.
WORKFORCE_WORKFLOW = "WorkforceWorkflow"


async def start_workforce_task(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    workforce: Workforce,
    spec: WorkforceSpec,
    message: str,
    params: dict[str, Any] | None = None,
    user_group_id: str | None = None,
    task_id: str | None = None,
) -> Task:
    """Starts a task of `workforce` at its current version (`spec`). A caller-chosen
    `task_id` makes the start idempotent. The params each agent node reads are checked
    against its agent's typed params (422 naming the node and the param)."""
    task_id = task_id or str(uuid.uuid4())
    values = params or {}
    await check_params(session, workforce.project_id, spec, values)
    existing = await session.get(Task, task_id)
    if existing is not None and existing.workforce_id != workforce.id:
        raise Conflict(f"task {task_id} belongs to another workforce or agent")
    if existing is not None and existing.error != NOT_STARTED:
        return existing
    if existing is None:
        await workforce_task_repo.ensure_workforce_task(
            session=session,
            task_id=task_id,
            project_id=workforce.project_id,
            workforce_id=workforce.id,
            workforce_version=workforce.version,
            first_message=message,
            user_group_id=user_group_id,
            params=values,
        )
    else:  # its workflow never started (Temporal was down): this retry starts it
        await task_repo.set_status(session=session, task_id=task_id, status=TaskStatus.queued)
    await session.commit()
    task = await task_repo.get_task_by_id(session=session, task_id=task_id)
    try:
        await temporal_client.start_workflow(
            WORKFORCE_WORKFLOW,
            WorkforceTaskInput(
                task_id=task_id,
                project_id=workforce.project_id,
                workforce_id=workforce.id,
                workforce_version=task.workforce_version or workforce.version,
                workforce=spec,
                message=message,
                params=values,
                user_group_id=user_group_id,
            ),
            id=task.workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=temporal.run_search_attributes(
                project_id=workforce.project_id,
                kind=WORKFORCE_TASK_KIND,
                status=TaskStatus.queued.value,
                workforce_id=workforce.id,
            ),
            static_summary=task_summary(f"workforce {spec.name}", message),
        )
    except WorkflowAlreadyStartedError:
        return task
    except (RPCError, RuntimeError) as exc:
        logger.warning("could not start workforce task %s: %s", task_id, exc)
        await task_repo.set_status(
            session=session, task_id=task_id, status=TaskStatus.failed, error=NOT_STARTED
        )
        await session.commit()
        raise ServiceUnavailable(
            "Temporal is unavailable; the task was not started", details={"task_id": task_id}
        ) from exc
    return task


async def check_params(
    session: AsyncSession, project_id: str, spec: WorkforceSpec, params: dict[str, Any]
) -> None:
    """Params of a task of `spec`: those each agent node reads, checked against its agent's
    typed params (422 naming the node and the param)."""
    for index, node in enumerate(spec.nodes):
        if not isinstance(node, AgentNode):
            continue
        try:
            agent = await agent_repo.get_agent(
                session=session, project_id=project_id, agent_id=node.agent_id
            )
        except NotFound as exc:
            raise InvalidInput(
                f"node {node.id!r}: its agent {node.agent_id} no longer exists",
                details=[{"field": f"nodes[{index}].agent_id", "message": "no such agent"}],
            ) from exc
        try:
            agent_node_params(agent_repo.agent_spec(agent), params)
        except InvalidInput as exc:
            raise InvalidInput(
                f"params (node {node.id!r}): {exc.message}",
                details=[
                    {"field": f"params.{problem['param']}", "message": problem["message"]}
                    for problem in exc.details
                ],
            ) from exc
