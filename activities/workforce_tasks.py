"""Writing a workforce task's projection: its row, conversation, node runs and status."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.tasks import write_status
from baton import activity_names
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import events as event_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.repositories import tools as tool_repo
from baton.db.repositories import workforce_tasks as workforce_task_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Agent
from baton.domain.agents import AgentSpec
from baton.domain.credits import PlanBook
from baton.domain.events import EventDraft, EventType
from baton.domain.tool_checks import referenced_snippets
from baton.domain.tools import ToolSpec
from baton.domain.workforce_tasks import (
    AgentNodeSetup,
    BeginWorkforceTask,
    BegunWorkforceTask,
    WorkforceRecord,
    agent_node_params,
)
from baton.domain.workforces import AgentNode, ToolNode
from baton.errors import BatonError, InvalidInput, NotFound


class WorkforceTaskActivities:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], plans: PlanBook) -> None:
        self._sessions = session_factory
        self._plans = plans

    @activity.defn(name=activity_names.WORKFORCE_TASK_BEGIN)
    async def begin(self, begin: BeginWorkforceTask) -> BegunWorkforceTask:
        """Makes sure the task's row exists and pins what its nodes need: each tool node's
        tool (with every tool it calls) and their snippets, each agent node's agent name and
        its params from the task's. A node whose agent or tool is gone fails the task; a
        scheduled start loads the workforce (gone: the task fails, with no row to write)."""
        try:
            async with self._sessions.begin() as session:
                spec, version = begin.workforce, begin.workforce_version
                if spec is None:
                    workforce = await workforce_repo.get_workforce(
                        session=session,
                        project_id=begin.project_id,
                        workforce_id=begin.workforce_id,
                    )
                    spec, version = workforce_repo.workforce_spec(workforce), workforce.version
                await workforce_task_repo.ensure_workforce_task(
                    session=session,
                    task_id=begin.task_id,
                    project_id=begin.project_id,
                    workforce_id=begin.workforce_id,
                    workforce_version=version,
                    first_message=begin.message,
                    user_group_id=begin.user_group_id,
                    params=begin.params,
                    workflow_id=begin.workflow_id,
                )
                tools: dict[str, ToolSpec] = {}
                versions: dict[str, int] = {}
                agents: dict[str, AgentNodeSetup] = {}
                for node in spec.nodes:
                    if isinstance(node, ToolNode) and node.tool_id not in versions:
                        version, closure = await _tool(session, begin.project_id, node)
                        versions[node.tool_id] = version
                        tools.update(closure)
                    elif isinstance(node, AgentNode):
                        agent = await _agent(session, begin.project_id, node)
                        agents[node.id] = AgentNodeSetup(
                            agent_name=agent.name,
                            params=_params(node, agent_repo.agent_spec(agent), begin),
                        )
                snippets = await snippet_repo.snippet_values(
                    session=session,
                    project_id=begin.project_id,
                    names=set().union(*(referenced_snippets(tool) for tool in tools.values())),
                )
        except BatonError as exc:
            raise as_application_error(exc) from exc
        loaded = begin.workforce is None
        return BegunWorkforceTask(
            tools=tools,
            tool_versions=versions,
            snippets=snippets,
            agents=agents,
            workforce=spec if loaded else None,
            workforce_version=version if loaded else None,
        )

    @activity.defn(name=activity_names.WORKFORCE_TASK_RECORD)
    async def record(self, record: WorkforceRecord) -> None:
        """The workflow's writes in one transaction; run as a local activity, so it costs
        the workflow's history one marker."""
        try:
            async with self._sessions.begin() as session:
                for new_run in record.tool_runs:
                    await run_repo.ensure_run(session=session, new_run=new_run, plans=self._plans)
                if record.events:
                    await event_repo.append_events(
                        session=session, task_id=record.task_id, events=record.events
                    )
                for message in record.messages:
                    await workforce_task_repo.put_message(
                        session=session, task_id=record.task_id, message=message
                    )
                    await event_repo.append_events(
                        session=session,
                        task_id=record.task_id,
                        events=[
                            EventDraft(
                                type=EventType.message_completed,
                                data=message.model_dump(mode="json"),
                                key=f"message:{message.seq}",
                            )
                        ],
                    )
                if record.status is not None:
                    info = activity.info()
                    await write_status(
                        session,
                        record.status,
                        key=f"status:{info.workflow_run_id}:{info.activity_id}",
                    )
        except NotFound as exc:
            raise ApplicationError(exc.message, type="not_found", non_retryable=True) from exc


async def _tool(
    session: AsyncSession, project_id: str, node: ToolNode
) -> tuple[int, dict[str, ToolSpec]]:
    try:
        tool = await tool_repo.get_tool(
            session=session, project_id=project_id, tool_id=node.tool_id
        )
        return await tool_repo.pinned_closure(session=session, tool_id=tool.id)
    except NotFound as exc:
        raise NotFound(f"node {node.id}: its tool {node.tool_id} no longer exists") from exc


async def _agent(session: AsyncSession, project_id: str, node: AgentNode) -> Agent:
    try:
        return await agent_repo.get_agent(
            session=session, project_id=project_id, agent_id=node.agent_id
        )
    except NotFound as exc:
        raise NotFound(f"node {node.id}: its agent {node.agent_id} no longer exists") from exc


def _params(node: AgentNode, spec: AgentSpec, begin: BeginWorkforceTask) -> dict[str, Any]:
    try:
        return agent_node_params(spec, begin.params)
    except InvalidInput as exc:
        raise InvalidInput(f"node {node.id}: params: {exc.message}") from exc
