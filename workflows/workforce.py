"""`WorkforceWorkflow`: a task that flows through a workforce's graph of agents, tools and
conditions (baton/domain/workforces.py).

A pass through the graph starts at the entry with the user's message. An agent node is a
child `AgentTaskWorkflow` (a task of its own, one turn, with its delegate edges as tools);
its answer is the node's output, and the next agent reads the original message and what was
handed over. A tool node is a child `ToolRunWorkflow` over its params, rendered from the
output before it (`{{ input }}`), the message (`{{ message }}`) and the task's params
(`{{ params.x }}`). A condition picks the next node by rules or by a model. After a node the
work goes to its handover targets; several run one after another, each target's whole chain
before the next one's, each from the same output. A node without one ends its chain, and
the pass is done when every chain is.

Then the task completes, or, with the workforce's `idle_timeout_seconds`, waits for a
follow-up (the update `post_message`, as for agent tasks) and starts a new pass at the entry.
An agent node that fails runs again up to its `retries`, then terminates the task (failed)
or escalates it: `escalated` until a person's message, with which the node runs again.
`max_node_runs` caps the node runs of the whole task (`execution-limit-reached`).

A message the update accepts is always answered: the validator refuses messages once the
task is ending, and messages still waiting are carried across continue-as-new."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
)

with workflow.unsafe.imports_passed_through():
    from baton import activity_names, templating
    from baton.domain.events import EventDraft, EventType
    from baton.domain.llm import LlmRequest, LlmResponse, Message, MessageRole
    from baton.domain.tasks import (
        AgentTaskInput,
        AgentTaskResult,
        LlmCall,
        TaskStatus,
        TaskStatusUpdate,
        UserMessage,
    )
    from baton.domain.tool_checks import validate_params
    from baton.domain.tool_runs import NewToolRun, ToolRunInput, tool_run_workflow_id
    from baton.domain.tools import ToolRunStatus
    from baton.domain.workforce_tasks import (
        AGENT_TASK_KIND,
        DELEGATION_ROLE,
        HANDOVER_ROLE,
        NODE_OUTPUT_PREVIEW,
        AgentNodeSetup,
        BeginWorkforceTask,
        BegunWorkforceTask,
        WorkforceMessage,
        WorkforceRecord,
        WorkforceTaskInput,
        WorkforceTaskResult,
        WorkforceTaskState,
        agent_task_workflow_id,
        as_text,
        parsed,
    )
    from baton.domain.workforces import (
        AgentNode,
        ConditionNode,
        OnFailure,
        ToolNode,
        WorkforceSpec,
        pick_branch,
    )
    from baton.errors import BatonError
    from baton.search_attributes import BATON_STATUS, run_search_attributes
    from workflows import policies
    from workflows.agent_task import AgentTaskWorkflow
    from workflows.tool_run import ToolRunWorkflow

# What a model condition is told, after the node's own prompt.
PICK_A_LABEL = "Answer with exactly one of these labels and nothing else: {labels}."
MODEL_CONDITION_MAX_TOKENS = 50


class TaskStopped(Exception):
    def __init__(self, status: TaskStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class NodeFailed(Exception):
    """An agent node's run that did not answer; `error` says why."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Work:
    """A node due to run: its input, and the node that produced it (None: the user)."""

    node: str
    input: Any
    source: str | None


@workflow.defn(name="WorkforceWorkflow")
class WorkforceWorkflow:
    def __init__(self) -> None:
        self._status = TaskStatus.queued
        self._listed: str | None = None
        self._inbox: list[str] = []
        # Set, with no await in between, when the task decides to end: from then on
        # `post_message` refuses messages, so none is accepted and left unanswered.
        self._ending = False
        self._node: str | None = None
        self._node_runs = 0
        self._seq = 0
        # Written with the next record: events and messages that need no round trip now.
        self._events: list[EventDraft] = []
        self._messages: list[WorkforceMessage] = []

    # Set as the run starts, or (a scheduled start) once the task has begun.
    _spec: WorkforceSpec

    @workflow.run
    async def run(self, task: WorkforceTaskInput) -> WorkforceTaskResult:
        self._input = task
        if task.workforce is not None:
            self._spec = task.workforce
        # A schedule starts the workflow with no task: this run makes it.
        self._task_id = task.task_id or str(workflow.uuid4())
        self._inbox[:0] = task.inbox
        self._listed = workflow.info().typed_search_attributes.get(BATON_STATUS)
        self._node_runs = task.node_runs
        self._answer = task.answer
        resumed = task.message_count > 0
        try:
            if resumed:  # continued as new: everything was pinned before
                self._seq = task.message_count
                self._pinned = BegunWorkforceTask(
                    tools=task.tools,
                    tool_versions=task.tool_versions,
                    snippets=task.snippets,
                    agents=task.agents,
                )
            else:
                self._pinned = await self._begin()
                self._seq = 1
            return await self._work(None if resumed else task.message)
        except TaskStopped as stop:
            self._ending = True
            await self._record(status=stop.status, error=stop.error)
            # Failed in Temporal too, like an agent task that stops: its status filter and
            # `ExecutionStatus="Failed"` find it; the reason is the failure's message.
            kind = {
                TaskStatus.execution_limit_reached: "ExecutionLimitReached",
                TaskStatus.timed_out: "TaskTimedOut",
            }.get(stop.status, "TaskFailed")
            raise ApplicationError(stop.error, type=kind, non_retryable=True) from None
        except asyncio.CancelledError:
            self._ending = True
            await self._record(status=TaskStatus.cancelled, error="cancelled")
            raise

    # Updates and queries: the names and payloads of AgentTaskWorkflow's, so the task
    # routes serve both kinds.

    @workflow.update
    def post_message(self, message: UserMessage) -> str:
        self._inbox.append(message.content)
        return "queued"

    @post_message.validator
    def _still_listening(self, message: UserMessage) -> None:
        if self._ending:
            raise ApplicationError("the task is ending and takes no more messages", type="ending")

    @workflow.query
    def state(self) -> WorkforceTaskState:
        return WorkforceTaskState(
            status=self._status,
            node=self._node,
            node_runs=self._node_runs,
            queued_messages=len(self._inbox),
        )

    # The task

    async def _begin(self) -> BegunWorkforceTask:
        task = self._input
        try:
            begun: BegunWorkforceTask = await workflow.execute_activity(
                activity_names.WORKFORCE_TASK_BEGIN,
                BeginWorkforceTask(
                    task_id=self._task_id,
                    workflow_id=workflow.info().workflow_id,
                    project_id=task.project_id,
                    workforce_id=task.workforce_id,
                    workforce_version=task.workforce_version,
                    workforce=task.workforce,
                    message=task.message,
                    params=task.params,
                    user_group_id=task.user_group_id,
                ),
                result_type=BegunWorkforceTask,
                start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
                retry_policy=policies.DB_WRITE_RETRY,
                summary="begin workforce task",
            )
        except ActivityError as exc:
            _reraise_cancel(exc)
            raise TaskStopped(
                TaskStatus.failed, f"the task could not begin: {_cause(exc)}"
            ) from exc
        if begun.workforce is not None:  # a scheduled start: carried as if it were given
            self._spec = begun.workforce
            self._input = task.model_copy(
                update={
                    "task_id": self._task_id,
                    "workforce": begun.workforce,
                    "workforce_version": begun.workforce_version or 0,
                }
            )
        return begun

    async def _work(self, message: str | None) -> WorkforceTaskResult:
        """Passes through the graph, one per message, until the task ends. A run continued
        as new starts waiting for the next message: its predecessor had answered all."""
        while True:
            if message is not None:
                self._answer = await self._pass(message)
            if self._inbox:
                message = self._take_message()
                continue
            if self._spec.idle_timeout_seconds <= 0:
                return await self._complete()
            await self._record(status=TaskStatus.idle, details="waiting for a message")
            if workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()
            try:
                await workflow.wait_condition(
                    lambda: bool(self._inbox),
                    timeout=timedelta(seconds=self._spec.idle_timeout_seconds),
                )
            except TimeoutError:
                if not self._inbox:  # one may have come in with the timer: answer it
                    return await self._complete()
            message = self._take_message()

    async def _complete(self) -> WorkforceTaskResult:
        self._ending = True
        await self._record(status=TaskStatus.completed)
        return WorkforceTaskResult(
            status=TaskStatus.completed, answer=self._answer, node_runs=self._node_runs
        )

    def _take_message(self) -> str:
        """The next follow-up, as a user message of the task's conversation."""
        message = self._inbox.pop(0)
        self._say(WorkforceMessage(seq=self._seq, role=MessageRole.user.value, content=message))
        return message

    async def _pass(self, message: str) -> str:
        """One pass through the graph for `message`; the last agent answer (or, with no
        agent on the way, the last output)."""
        due = [Work(node=self._spec.entry, input=message, source=None)]
        answer: Any = message
        while due:
            work = due.pop(0)
            node = self._spec.node(work.node)
            source: str | None = node.id
            if isinstance(node, AgentNode):
                output: Any = await self._agent_node(node, work, message)
                targets = self._spec.handover_targets(node.id)
            elif isinstance(node, ToolNode):
                output = await self._tool_node(node, work, message)
                targets = self._spec.handover_targets(node.id)
            else:
                targets = [await self._condition(node, work)]
                output, source = work.input, work.source  # a condition only routes
            answer = output
            due[:0] = [Work(node=target, input=output, source=source) for target in targets]
        return as_text(answer)

    # Nodes

    def _count_run(self, node_id: str) -> int:
        if self._node_runs >= self._spec.max_node_runs:
            raise TaskStopped(
                TaskStatus.execution_limit_reached,
                f"the task ran {self._node_runs} nodes, its workforce's max_node_runs; "
                f"node {node_id!r} was next",
            )
        self._node_runs += 1
        self._node = node_id
        return self._node_runs

    async def _agent_node(self, node: AgentNode, work: Work, message: str) -> str:
        """The node's agent answers, in a task of its own; a failure runs it again up to
        `retries`, then terminates or escalates the task."""
        if work.source is None:
            text = message
        else:
            handed = as_text(work.input)
            text = f"{message}\n\nHanded over by {work.source}:\n{handed}"
            self._say(
                WorkforceMessage(
                    seq=self._seq,
                    role=HANDOVER_ROLE,
                    content=handed,
                    author=work.source,
                    to=node.id,
                )
            )
        setup = self._pinned.agents[node.id]
        while True:
            error = ""
            for _ in range(node.retries + 1):
                try:
                    answer = await self._run_agent(node, setup, text)
                except NodeFailed as failed:
                    error = failed.error
                    continue
                self._say(
                    WorkforceMessage(
                        seq=self._seq,
                        role=MessageRole.assistant.value,
                        content=answer,
                        author=node.id,
                    )
                )
                return answer
            reason = f"node {node.id!r} failed: {error}"
            if node.on_failure is OnFailure.terminate:
                raise TaskStopped(TaskStatus.failed, reason)
            text = await self._escalate(node, reason)

    async def _escalate(self, node: AgentNode, reason: str) -> str:
        """Waits for a person's message, with which the failed node runs again."""
        await self._record(
            status=TaskStatus.escalated,
            error=reason,
            details=f"escalated: {reason}; waiting for a person's message",
        )
        self._node = None
        await workflow.wait_condition(lambda: bool(self._inbox))
        return self._take_message()

    async def _run_agent(self, node: AgentNode, setup: AgentNodeSetup, text: str) -> str:
        number = self._count_run(node.id)
        child_id = str(workflow.uuid4())
        self._events.append(
            _node_event(
                EventType.node_started,
                number,
                node=node.id,
                type=node.type,
                node_task_id=child_id,
                agent_id=node.agent_id,
            )
        )
        await self._record(
            status=TaskStatus.running, details=f"node {node.id}: agent {setup.agent_name} works"
        )
        project_id = self._input.project_id
        try:
            result: AgentTaskResult = await workflow.execute_child_workflow(
                AgentTaskWorkflow.run,
                AgentTaskInput(
                    task_id=child_id,
                    project_id=project_id,
                    agent_id=node.agent_id,
                    message=text,
                    user_group_id=self._input.user_group_id,
                    params=setup.params,
                    parent_task_id=self._task_id,
                    node=node.id,
                    workforce=self._spec,
                    single_turn=True,
                    workforce_id=self._input.workforce_id,
                ),
                id=agent_task_workflow_id(child_id),
                static_summary=f"node {node.id}: agent {setup.agent_name}",
                search_attributes=run_search_attributes(
                    project_id=project_id,
                    kind=AGENT_TASK_KIND,
                    status=TaskStatus.queued.value,
                    agent_id=node.agent_id,
                    workforce_id=self._input.workforce_id,
                ),
            )
        except ChildWorkflowError as exc:
            _reraise_cancel(exc)
            error = _child_cause(exc)
            self._events.append(_node_event(EventType.node_failed, number, error=error))
            raise NodeFailed(error) from exc
        for delegation in result.delegations:
            self._say(
                WorkforceMessage(
                    seq=self._seq,
                    role=DELEGATION_ROLE,
                    content=delegation.message,
                    author=delegation.caller,
                    to=delegation.to,
                    task_id=delegation.task_id,
                )
            )
        if result.status is not TaskStatus.completed:
            error = result.error or result.status.value
            self._events.append(_node_event(EventType.node_failed, number, error=error))
            raise NodeFailed(error)
        answer = result.answer or ""
        self._events.append(
            _node_event(EventType.node_completed, number, output=answer[:NODE_OUTPUT_PREVIEW])
        )
        return answer

    async def _tool_node(self, node: ToolNode, work: Work, message: str) -> Any:
        """The node's tool over its params, rendered from the input; a tool that fails
        fails the task (a tool node has no person to escalate to)."""
        number = self._count_run(node.id)
        spec = self._pinned.tools[node.tool_id]
        context = {"input": parsed(work.input), "message": message, "params": self._input.params}
        try:
            budget = templating.Budget(templating.TOOL_RUN_WORK, scope=f"node {node.id}'s params")
            params = validate_params(
                spec, templating.render_tree(node.params, context, budget=budget)
            )
        except (templating.TemplateError, BatonError) as exc:
            raise TaskStopped(
                TaskStatus.failed, f"node {node.id!r}: its params could not be made: {exc}"
            ) from exc
        run_id = str(workflow.uuid4())
        project_id = self._input.project_id
        version = self._pinned.tool_versions.get(node.tool_id, 0)
        self._events.append(
            _node_event(
                EventType.node_started,
                number,
                node=node.id,
                type=node.type,
                run_id=run_id,
                tool_id=node.tool_id,
            )
        )
        await self._record(
            status=TaskStatus.running,
            details=f"node {node.id}: tool {spec.name} runs",
            tool_runs=[
                NewToolRun(
                    run_id=run_id,
                    project_id=project_id,
                    tool_id=node.tool_id,
                    tool_version=version,
                    params=params,
                )
            ],
        )
        try:
            result = await workflow.execute_child_workflow(
                ToolRunWorkflow.run,
                ToolRunInput(
                    run_id=run_id,
                    project_id=project_id,
                    tool_id=node.tool_id,
                    tool_version=version,
                    specs=self._pinned.tools,
                    params=params,
                    snippets=self._pinned.snippets,
                ),
                id=tool_run_workflow_id(run_id),
                static_summary=f"node {node.id}: tool {spec.name}",
                search_attributes=run_search_attributes(
                    project_id=project_id,
                    kind="tool-run",
                    status=ToolRunStatus.queued.value,
                    workforce_id=self._input.workforce_id,
                ),
            )
        except ChildWorkflowError as exc:
            _reraise_cancel(exc)
            error = _child_cause(exc)
        else:
            if result.status is ToolRunStatus.succeeded:
                self._events.append(
                    _node_event(
                        EventType.node_completed,
                        number,
                        output=as_text(result.output)[:NODE_OUTPUT_PREVIEW],
                    )
                )
                return result.output
            error = result.error or result.status.value
        self._events.append(_node_event(EventType.node_failed, number, error=error))
        raise TaskStopped(TaskStatus.failed, f"node {node.id!r} failed: {error}")

    async def _condition(self, node: ConditionNode, work: Work) -> str:
        number = self._count_run(node.id)
        self._events.append(
            _node_event(EventType.node_started, number, node=node.id, type=node.type)
        )
        if node.mode == "model":
            branch = await self._ask_model(node, work.input, number)
        else:
            branch = pick_branch(node, parsed(work.input))
        self._events.append(_node_event(EventType.node_completed, number, branch=branch))
        return branch

    async def _ask_model(self, node: ConditionNode, value: Any, number: int) -> str:
        """One model call picks a branch by its label; an answer that names none takes the
        default."""
        labels = [branch.label or branch.to for branch in node.branches]
        instructions = "\n\n".join(
            part for part in (node.prompt, PICK_A_LABEL.format(labels=", ".join(labels))) if part
        )
        assert node.model is not None  # check_graph refuses a model condition without one
        await self._record(
            status=TaskStatus.running, details=f"node {node.id}: the model picks a branch"
        )
        try:
            response: LlmResponse = await workflow.execute_activity(
                activity_names.LLM_CHAT,
                LlmCall(
                    task_id=self._task_id,
                    request=LlmRequest(
                        model=node.model,
                        messages=[
                            Message(role=MessageRole.system, content=instructions),
                            Message(role=MessageRole.user, content=as_text(value)),
                        ],
                        max_tokens=MODEL_CONDITION_MAX_TOKENS,
                    ),
                    stream_key=f"condition:{workflow.info().run_id}:{number}",
                    project_id=self._input.project_id,
                ),
                result_type=LlmResponse,
                start_to_close_timeout=policies.LLM_CALL_TIMEOUT,
                heartbeat_timeout=policies.LLM_HEARTBEAT_TIMEOUT,
                retry_policy=policies.LLM_RETRY,
                summary=f"node {node.id}: llm {node.model}",
            )
        except ActivityError as exc:
            _reraise_cancel(exc)
            raise TaskStopped(
                TaskStatus.failed, f"node {node.id!r}: the model call failed: {_cause(exc)}"
            ) from exc
        return _branch_named(node, labels, response.content)

    # Bookkeeping

    def _say(self, message: WorkforceMessage) -> None:
        """A message of the task's conversation, written with the next record."""
        self._messages.append(message)
        self._seq += 1

    async def _continue_as_new(self) -> None:
        await self._record()  # nothing waits in memory when the run ends
        task = self._input
        workflow.continue_as_new(
            task.model_copy(
                update={
                    "message": "",
                    "message_count": self._seq,
                    "node_runs": self._node_runs,
                    "inbox": self._inbox,
                    "answer": self._answer,
                    "tools": self._pinned.tools,
                    "tool_versions": self._pinned.tool_versions,
                    "snippets": self._pinned.snippets,
                    "agents": self._pinned.agents,
                }
            )
        )

    async def _record(
        self,
        *,
        status: TaskStatus | None = None,
        error: str | None = None,
        details: str | None = None,
        tool_runs: list[NewToolRun] | None = None,
    ) -> None:
        """One local activity (one history marker) for the waiting events and messages and,
        when it changes, the status."""
        update = None
        if status is not None and (status is not self._status or error is not None):
            self._status = status
            self._list(status)
            update = TaskStatusUpdate(
                task_id=self._task_id,
                status=status,
                error=error,
                details={"details": details} if details else {},
            )
        if status is not None:
            workflow.set_current_details(details or status.value)
        events, self._events = self._events, []
        messages, self._messages = self._messages, []
        if not (update or events or messages or tool_runs):
            return
        what = (
            status.value if update and status else (events[0].type.value if events else "messages")
        )
        await workflow.execute_local_activity(
            activity_names.WORKFORCE_TASK_RECORD,
            WorkforceRecord(
                task_id=self._task_id,
                tool_runs=tool_runs or [],
                events=events,
                messages=messages,
                status=update,
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"record {what}",
        )

    def _list(self, status: TaskStatus) -> None:
        """BatonStatus changes only where a filter needs it (each upsert is a history
        event): `running` for a task that runs or is idle, and every other status."""
        listed = TaskStatus.running if status is TaskStatus.idle else status
        if listed.value != self._listed:
            self._listed = listed.value
            workflow.upsert_search_attributes([BATON_STATUS.value_set(listed.value)])


def _node_event(event: EventType, number: int, **data: Any) -> EventDraft:
    return EventDraft(type=event, data={"run": number, **data}, key=f"node:{number}:{event.value}")


def _branch_named(node: ConditionNode, labels: list[str], answer: str) -> str:
    """The branch whose label the answer is, else the first whose label it contains, else
    the default."""
    said = _words(answer)
    for branch, label in zip(node.branches, labels, strict=True):
        if _words(label) == said:
            return branch.to
    for branch, label in zip(node.branches, labels, strict=True):
        if re.search(rf"\b{re.escape(_words(label))}\b", said):
            return branch.to
    assert node.default is not None  # check_graph refuses a condition without one
    return node.default


def _words(text: str) -> str:
    return " ".join(re.findall(r"[\w-]+", text.lower()))


def _child_cause(exc: ChildWorkflowError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)


def _reraise_cancel(exc: ActivityError | ChildWorkflowError) -> None:
    if isinstance(exc.cause, CancelledError):
        raise asyncio.CancelledError() from exc


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
