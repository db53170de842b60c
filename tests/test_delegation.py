"""An agent task as a workforce node, and delegation: a `delegate` edge gives the source
agent a tool `ask_<target>` that runs the target's agent in a task of its own (a child
`AgentTaskWorkflow`) and brings back its answer as the tool result. Through the real
Temporal server and a real worker, on the offline scripted models."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import tasks as task_repo
from baton.db.tables import Task
from baton.domain.models import SCRIPTED_LABEL
from baton.domain.tasks import AgentTaskInput, AgentTaskResult, TaskStatus
from baton.settings import Settings
from tests.conftest import Tenant
from tests.test_agent_tasks import make_agent


async def test_a_node_run_answers_once_and_records_its_parent_and_node(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
):
    # An agent that would wait an hour for a follow-up: a node run completes at once.
    agent = await make_agent(
        api, tenant, tools=[], model="scripted:echo", idle_timeout_seconds=3600
    )
    parent_id = str(uuid.uuid4())
    async with session_factory.begin() as session:
        await task_repo.create_task(
            session=session,
            task_id=parent_id,
            project_id=tenant.project_id,
            agent_id=agent,
            first_message="the parent's message",
        )
    task_id = str(uuid.uuid4())
    handle = await temporal_env.client.start_workflow(
        "AgentTaskWorkflow",
        AgentTaskInput(
            task_id=task_id,
            project_id=tenant.project_id,
            agent_id=agent,
            message="what is the plan?",
            parent_task_id=parent_id,
            node="planner",
            single_turn=True,
        ),
        id=task_repo.workflow_id_for(task_id),
        task_queue=settings.temporal_task_queue,
        result_type=AgentTaskResult,
    )
    result = await handle.result()

    assert result.status is TaskStatus.completed
    assert result.answer == f"{SCRIPTED_LABEL} You said: what is the plan?"
    async with session_factory() as session:
        row = await session.get(Task, task_id)
    assert row is not None
    assert (row.parent_task_id, row.node, row.kind, row.agent_id) == (
        parent_id,
        "planner",
        "agent-task",
        agent,
    )
    assert row.status == "completed"
