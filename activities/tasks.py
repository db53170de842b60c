"""Writing a task's projection (row, status, messages, events) for the API to read. Each
write also appends the matching event in the same transaction, so the stream and the
projection never disagree."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from baton.db.repositories import agents as agent_repo
from baton.db.repositories import capacity as capacity_repo
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import events as event_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import KnowledgeRow
from baton.domain.agents import AgentSpec
from baton.domain.capacity import CAPACITY_FREED_SIGNAL, Admission, AdmitTask
from baton.domain.credits import PlanBook
from baton.domain.events import EventDraft, EventType
from baton.domain.knowledge import (
    AttachMode,
    EmbeddingConfig,
    EmbeddingProvider,
    knowledge_prompt,
    knowledge_search_tool,
    knowledge_tool_id,
)
from baton.domain.tasks import (
    BeginTask,
    BegunTask,
    TaskMessageAppend,
    TaskRecord,
    TaskStatusUpdate,
    continued_conversation,
)
from baton.domain.tool_checks import referenced_snippets
from baton.domain.tools import ToolSpec
from baton.domain.workforce_tasks import agent_node_params
from baton.errors import InvalidInput, NotFound

logger = logging.getLogger("baton.tasks")

# How many rows of a prompt-mode set are read at most to fill its token budget.
PROMPT_ROWS_READ = 2000


async def _knowledge(
    session: AsyncSession, project_id: str, spec: AgentSpec
) -> tuple[dict[str, ToolSpec], str]:
    """The agent's attached sets: a search tool for each search-mode set, and the rows of
    the prompt-mode sets as text for the system prompt. A deleted set is left out."""
    tools: dict[str, ToolSpec] = {}
    sections: list[str] = []
    for attached in spec.knowledge:
        try:
            knowledge_set = await set_repo.get_set(
                session=session, project_id=project_id, set_id=attached.set_id
            )
        except NotFound:
            continue
        if attached.mode is AttachMode.search:
            provider = EmbeddingConfig.model_validate(knowledge_set.embedding or {}).provider
            tools[knowledge_tool_id(knowledge_set.id)] = knowledge_search_tool(
                set_id=knowledge_set.id,
                name=knowledge_set.name,
                description=attached.description or knowledge_set.description,
                vector=provider is not EmbeddingProvider.none,
                rerank=attached.rerank,
            )
            continue
        rows = await session.execute(
            select(KnowledgeRow.id, KnowledgeRow.content)
            .where(KnowledgeRow.set_id == knowledge_set.id)
            .order_by(KnowledgeRow.id)
            .limit(min(PROMPT_ROWS_READ, attached.token_budget))
        )
        sections.append(
            knowledge_prompt(
                knowledge_set.name,
                [(row_id, content) for row_id, content in rows.all()],
                attached.token_budget,
                total=knowledge_set.row_count,
            )
        )
    return tools, "\n\n".join(sections)


def _own_params(spec: AgentSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The params of a task another task started (a workforce node's, a delegation's): of
    those it was given, the ones its agent declares, checked, with its defaults. A param the
    agent requires and nobody gave fails the task, naming it."""
    try:
        return agent_node_params(spec, given)
    except InvalidInput as exc:
        raise ApplicationError(
            f"params: {exc.message}", type="invalid_input", non_retryable=True
        ) from exc


class TaskActivities:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], plans: PlanBook) -> None:
        self._sessions = session_factory
        self._plans = plans

    @activity.defn(name="baton.task.begin")
    async def begin(self, begin: BeginTask) -> BegunTask:
        """Makes sure the task's row exists, and pins the agent (when not given) and the
        tools it may call, with every tool those call."""
        async with self._sessions.begin() as session:
            # An agent deleted since the start was asked for (a schedule's, or a workforce's
            # node pinned before) fails the task at once: its row could not even be written.
            try:
                agent_row = await agent_repo.get_agent(
                    session=session, project_id=begin.project_id, agent_id=begin.agent_id
                )
            except NotFound as exc:
                raise ApplicationError(exc.message, type="not_found", non_retryable=True) from exc
            spec = agent_repo.agent_spec(agent_row)
            params = begin.params
            message = begin.message
            if begin.conversation_of is not None:
                message = await _continued(session, begin)
            if begin.parent_task_id is not None:
                params = _own_params(spec, begin.params)
            await task_repo.ensure_task(
                session=session,
                task_id=begin.task_id,
                workflow_id=begin.workflow_id,
                project_id=begin.project_id,
                agent_id=begin.agent_id,
                first_message=message,
                user_group_id=begin.user_group_id,
                params=params,
                parent_task_id=begin.parent_task_id,
                node=begin.node,
            )
            if begin.load_agent:
                # A scheduled start runs the agent's current version: record which.
                await task_repo.set_agent_version(
                    session=session, task_id=begin.task_id, version=agent_row.version
                )
            tools: dict[str, ToolSpec] = {}
            for agent_tool in spec.tools:
                try:
                    _, closure = await tool_repo.pinned_closure(
                        session=session, tool_id=agent_tool.tool_id
                    )
                except NotFound:
                    # A deleted tool is left out: the model simply does not see it.
                    continue
                tools.update(closure)
            knowledge_tools, knowledge_prompt = await _knowledge(session, begin.project_id, spec)
            snippets = await snippet_repo.snippet_values(
                session=session,
                project_id=begin.project_id,
                names=spec.snippet_names().union(
                    *(referenced_snippets(tool) for tool in tools.values())
                ),
            )
            limits = await credit_repo.plan_limits(
                session=session, plans=self._plans, project_id=begin.project_id
            )
            waiting = False
            admitted: list[str] = []
            # A task working for another is not queued: its parent holds a slot already and
            # waits for it, so queueing it could wait for ever.
            if begin.admit and begin.parent_task_id is None:
                waiting, admitted = await capacity_repo.claim(
                    session=session,
                    plans=self._plans,
                    task_id=begin.task_id,
                    project_id=begin.project_id,
                )
        await _tell_admitted(admitted)
        return BegunTask(
            agent=spec if begin.load_agent else None,
            tools={**tools, **knowledge_tools},
            snippets=snippets,
            knowledge_prompt=knowledge_prompt,
            params=params if begin.parent_task_id is not None else None,
            waiting_for_capacity=waiting,
            seconds_per_message=limits.agent_seconds_per_message,
            tool_run_seconds=limits.tool_run_seconds,
        )

    @activity.defn(name="baton.task.admit")
    async def admit(self, admit: AdmitTask) -> Admission:
        """A task waiting for capacity asks whether it has a slot now (a release handed it
        one, or the limit was raised)."""
        async with self._sessions.begin() as session:
            admitted, others = await capacity_repo.admit(
                session=session, plans=self._plans, task_id=admit.task_id
            )
        await _tell_admitted(others)
        return Admission(admitted=admitted)

    @activity.defn(name="baton.task.set_status")
    async def set_status(self, update: TaskStatusUpdate) -> None:
        async with self._sessions.begin() as session:
            admitted = await self._release_if_final(session, update)
            await write_status(session, update, key=_key("status"))
        await _tell_admitted(admitted)

    @activity.defn(name="baton.task.put_message")
    async def put_message(self, append: TaskMessageAppend) -> None:
        async with self._sessions.begin() as session:
            await write_message(session, append)

    @activity.defn(name="baton.task.record")
    async def record(self, record: TaskRecord) -> None:
        """The workflow's bookkeeping in one transaction; run as a local activity, so it
        costs the workflow's history one marker."""
        admitted: list[str] = []
        try:
            async with self._sessions.begin() as session:
                if record.status is not None:
                    admitted = await self._release_if_final(session, record.status)
                for new_run in record.tool_runs:
                    await run_repo.ensure_run(session=session, new_run=new_run, plans=self._plans)
                if record.events:
                    await event_repo.append_events(
                        session=session, task_id=record.task_id, events=record.events
                    )
                for append in record.messages:
                    await write_message(session, append)
                if record.status is not None:
                    await write_status(session, record.status, key=_key("recorded-status"))
        except NotFound as exc:
            raise ApplicationError(exc.message, type="not_found", non_retryable=True) from exc
        await _tell_admitted(admitted)

    async def _release_if_final(self, session: AsyncSession, update: TaskStatusUpdate) -> list[str]:
        """A task that ends gives its concurrency slot to the oldest waiting task: the
        workflow ids of those admitted."""
        if not update.status.is_final:
            return []
        return await capacity_repo.release(
            session=session, plans=self._plans, task_id=update.task_id
        )


async def _tell_admitted(workflow_ids: Sequence[str]) -> None:
    """Wakes the tasks just given a slot (after the transaction that gave it committed). A
    signal that fails is not retried: the waiting task asks again by itself after
    CAPACITY_RECHECK."""
    for workflow_id in workflow_ids:
        try:
            await activity.client().get_workflow_handle(workflow_id).signal(CAPACITY_FREED_SIGNAL)
        except (RPCError, RuntimeError) as exc:  # RuntimeError: no client (ActivityEnvironment)
            logger.warning("could not wake task %s waiting for capacity: %s", workflow_id, exc)


async def write_status(session: AsyncSession, update: TaskStatusUpdate, *, key: str) -> None:
    """The task's status and its `task.status` event; `key` makes the event idempotent."""
    await task_repo.set_status(
        session=session, task_id=update.task_id, status=update.status, error=update.error
    )
    data = {"status": update.status.value, **update.details}
    if update.error:
        data["error"] = update.error
    await event_repo.append_events(
        session=session,
        task_id=update.task_id,
        events=[EventDraft(type=EventType.task_status, data=data, key=key)],
    )


async def write_message(session: AsyncSession, append: TaskMessageAppend) -> bool:
    """Message `seq` once, after its events, with its `message.completed` event and its
    usage (added to the task's totals once): a retry writes nothing twice. True when the
    message was new."""
    new = await task_repo.put_message(
        session=session,
        task_id=append.task_id,
        seq=append.seq,
        message=append.message,
        usage=append.usage,
    )
    events = [
        *append.events,
        EventDraft(
            type=EventType.message_completed,
            data={"seq": append.seq, **append.message.model_dump(mode="json")},
            key=f"message:{append.seq}",
        ),
    ]
    if append.usage is not None:
        events.append(
            EventDraft(
                type=EventType.usage,
                data={
                    **append.usage.model_dump(mode="json"),
                    **({"model": append.model} if append.model else {}),
                },
                key=f"usage:{append.seq}",
            )
        )
    await event_repo.append_events(session=session, task_id=append.task_id, events=events)
    return new


async def _continued(session: AsyncSession, begin: BeginTask) -> str:
    """The first message of a task that continues another's conversation (a `task: same`
    delegation): that conversation so far, then the request. Only a task of the same
    project is read."""
    assert begin.conversation_of is not None
    try:
        caller = await task_repo.get_task_by_id(session=session, task_id=begin.conversation_of)
    except NotFound as exc:
        raise ApplicationError(exc.message, type="not_found", non_retryable=True) from exc
    if caller.project_id != begin.project_id:
        raise ApplicationError(
            f"task {begin.conversation_of} not found", type="not_found", non_retryable=True
        )
    messages = await task_repo.list_messages(session=session, task_id=caller.id)
    return continued_conversation(messages, caller.node or "the caller", begin.message)


def _key(kind: str) -> str:
    """An idempotency key for this activity execution: the same on its retries."""
    info = activity.info()
    return f"{kind}:{info.workflow_run_id}:{info.activity_id}"
