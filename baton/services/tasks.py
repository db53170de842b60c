"""Starting a task: the row first (the workflow's activities write to it), then the workflow.

The API's routes, webhooks and benchmarks start tasks here. The workflow is started by its
registered name, so this library does not import the workflow layer (tests/test_services.py
checks the name against `AgentTaskWorkflow`'s definition)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from baton import temporal
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories.agents import agent_spec
from baton.db.tables import Agent, Task
from baton.domain.agents import AgentSpec
from baton.domain.tasks import AgentTaskInput, TaskStatus
from baton.domain.tool_checks import validate_params
from baton.errors import Conflict, InvalidInput, ServiceUnavailable
from baton.services.credits import plan_book
from baton.settings import Settings

logger = logging.getLogger("baton.tasks")

# `@workflow.defn(name=...)` of workflows.agent_task.AgentTaskWorkflow.
AGENT_TASK_WORKFLOW = "AgentTaskWorkflow"

NOT_STARTED = "the task could not be started: Temporal is unavailable"
# How much of a task's first message its workflow's summary in the Temporal UI shows.
SUMMARY_WORDS_CHARS = 60


def task_summary(agent_name: str, message: str) -> str:
    """What the Temporal UI's workflow list shows for a task: a conversation, not a UUID."""
    words = " ".join(message.split())
    if len(words) > SUMMARY_WORDS_CHARS:
        words = words[:SUMMARY_WORDS_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return f"{agent_name}: {words}" if words else agent_name


async def start_agent_task(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    agent: Agent,
    message: str,
    task_id: str | None = None,
    user_group_id: str | None = None,
    params: dict[str, Any] | None = None,
    source: str | None = None,
) -> Task:
    """Starts a task of `agent`. A caller-chosen `task_id` makes the start idempotent: the
    same id again returns the task that id already started (webhook dedupe keys use it).
    `params` are checked against the agent's typed params (422 naming the param).
    `source` says where it came from when not the API (`share:<id>`)."""
    task_id = task_id or str(uuid.uuid4())
    spec = agent_spec(agent)
    values = task_params(spec, params or {})
    existing = await session.get(Task, task_id)
    if existing is None:
        task = await _create(session, task_id, agent, message, user_group_id, values, source)
    elif existing.agent_id != agent.id:
        raise Conflict(f"task {task_id} belongs to another agent")
    elif existing.error == NOT_STARTED:
        # Its workflow never started (Temporal was down): this retry starts it.
        task = existing
        await task_repo.set_status(session=session, task_id=task_id, status=TaskStatus.queued)
        await session.commit()
    else:
        return existing
    limits = await credit_repo.plan_limits(
        session=session, plans=plan_book(settings), project_id=agent.project_id
    )
    try:
        await temporal_client.start_workflow(
            AGENT_TASK_WORKFLOW,
            AgentTaskInput(
                task_id=task_id,
                project_id=agent.project_id,
                agent_id=agent.id,
                agent=spec,
                message=message,
                user_group_id=user_group_id,
                params=task.params or {},
                seconds_per_message=limits.agent_seconds_per_message,
                tool_run_seconds=limits.tool_run_seconds,
            ),
            id=task.workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=temporal.run_search_attributes(
                project_id=agent.project_id,
                kind="agent-task",
                status=TaskStatus.queued.value,
                agent_id=agent.id,
            ),
            static_summary=task_summary(spec.name, message),
        )
    except WorkflowAlreadyStartedError:
        return task  # a concurrent request with the same id started it
    except (RPCError, RuntimeError) as exc:
        logger.warning("could not start task %s: %s", task_id, exc)
        await task_repo.set_status(
            session=session,
            task_id=task_id,
            status=TaskStatus.failed,
            error=NOT_STARTED,
        )
        await session.commit()
        raise ServiceUnavailable(
            "Temporal is unavailable; the task was not started", details={"task_id": task_id}
        ) from exc
    return task


def task_params(spec: AgentSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The params a task of `spec` starts with, defaults applied."""
    try:
        return validate_params(spec, given)
    except InvalidInput as exc:
        raise InvalidInput(
            f"params: {exc.message}",
            details=[
                {"field": f"params.{problem['param']}", "message": problem["message"]}
                for problem in exc.details
            ],
        ) from exc


async def _create(
    session: AsyncSession,
    task_id: str,
    agent: Agent,
    message: str,
    user_group_id: str | None,
    params: dict[str, Any],
    source: str | None,
) -> Task:
    try:
        # The row is flushed here already, so a concurrent start's row may refuse it here too.
        task = await task_repo.create_task(
            session=session,
            task_id=task_id,
            project_id=agent.project_id,
            agent_id=agent.id,
            first_message=message,
            user_group_id=user_group_id,
            agent_version=agent.version,
            params=params,
            source=source,
        )
        await session.commit()
    except IntegrityError:
        # The same id was started a moment ago by a concurrent request: that one runs it.
        # The rollback expired the agent, which the caller reads on.
        await session.rollback()
        await session.refresh(agent)
        return await task_repo.get_task_by_id(session=session, task_id=task_id)
    return task
