"""`AgentTaskWorkflow`: one task, a conversation between a user and an agent.

A turn: call the model (its text streams into the task's events), run the tool calls it
asks for (several at once, some waiting for a person's approval; what it can call and how a
call runs comes from workflows/tool_sources.py), give it the results, until it answers
without calling a tool. Then the task is idle until a follow-up message arrives (the update
`post_message`) or the idle timeout passes. Approvals arrive by the update `decide`; `state`
is a query.

In a workforce a task runs one node (`node`, in the pinned `workforce`): it answers once
(`single_turn`) and its agent may delegate to the nodes its delegate edges lead to, each
delegation a child task of this one.

A message the update accepts is always answered: once the task decides to end, the
validator refuses further messages (the API answers 409), and messages still waiting when
the run continues as new are carried into the next run.

A run started since `FLAT_TURNS` keeps the transcript out of its history: the LLM activity
reads the conversation from the database by position (`seq`), writes the user and tool
messages it is given and its own answer, and the status around it; what the workflow still
writes (tool events, approvals, final statuses) is one local activity each time. A turn of
plain text costs about 11 history events whatever the conversation's length, and the run
carries only a message count across continue-as-new. Runs recorded before keep the old path."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.agents import AgentSpec, AgentTool, Approval, render_with_params
    from baton.domain.capacity import (
        CAPACITY_FREED_SIGNAL,
        CAPACITY_RECHECK,
        CAPACITY_RECHECK_MAX,
        WAITING_FOR_CAPACITY,
        Admission,
        AdmitTask,
    )
    from baton.domain.credits import CREDITS_ARRIVED_SIGNAL, CREDITS_RECHECK, OUT_OF_CREDITS
    from baton.domain.events import AppendEvents, EventDraft, EventType
    from baton.domain.llm import (
        LLM_RETRYING_SIGNAL,
        LlmRequest,
        LlmResponse,
        LlmRetrying,
        Message,
        MessageRole,
        TokenUsage,
        ToolCall,
    )
    from baton.domain.models import SCRIPTED_LABEL
    from baton.domain.tasks import (
        BUDGET_APPROVAL,
        AgentTaskInput,
        AgentTaskResult,
        BeginTask,
        BegunTask,
        Decision,
        ListMcpTools,
        LlmCall,
        McpToolList,
        McpToolOffer,
        PendingApproval,
        TaskMessageAppend,
        TaskRecord,
        TaskSpend,
        TaskState,
        TaskStatus,
        TaskStatusUpdate,
        UserMessage,
    )
    from baton.domain.tool_runs import NewToolRun
    from baton.domain.tools import ToolSpec
    from baton.search_attributes import BATON_STATUS
    from baton.templating import TemplateError
    from workflows import policies
    from workflows.tool_sources import (
        NEEDS_APPROVAL_ARG,
        TaskContext,
        callable_tools,
        reraise_cancel,
        tool_failed,
    )

# `workflow.patched` ids: each marks a change to the commands a run issues.
FAIL_STOPPED_TASKS = "fail-stopped-tasks"
ANSWER_LATE_MESSAGES = "answer-late-messages"
FLAT_TURNS = "flat-turns"
TOOL_RESULTS_AS_THEY_COME = "tool-results-as-they-come"
QUEUE_FOR_CAPACITY = "queue-for-capacity"


class TaskStopped(Exception):
    def __init__(self, status: TaskStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@workflow.defn(name="AgentTaskWorkflow")
class AgentTaskWorkflow:
    def __init__(self) -> None:
        self._status = TaskStatus.queued
        self._inbox: list[str] = []
        # Set, with no await in between, when the task decides to end: from then on
        # `post_message` refuses messages, so none is accepted and left unanswered.
        self._ending = False
        self._pending: dict[str, PendingApproval] = {}
        self._decisions: dict[str, Decision] = {}
        self._iterations = 0
        self._transcript: list[Message] = []
        # The flat path (FLAT_TURNS): no transcript, but the next message's seq, the messages
        # the next write carries, and the status the next LLM call writes as it starts.
        self._flat = False
        self._seq = 0
        self._writes: list[TaskMessageAppend] = []
        self._status_due: TaskStatus | None = None
        self._answer = ""
        self._listed: str | None = None
        self._idle_timer: asyncio.Task[None] | None = None
        # While a model call runs: the current details it will put back when it is over.
        self._details_before_model: str | None = None
        self._credits_arrived = False
        # Over the organisation's concurrency quota when it began: waits until admitted.
        self._waiting_for_capacity = False
        self._capacity_freed = False
        # When the agent must have answered the message it works on (the plan's
        # `agent_seconds_per_message`); None: no limit, or no message being worked on.
        self._message_deadline: datetime | None = None

    @workflow.run
    async def run(self, task: AgentTaskInput) -> AgentTaskResult:
        self._flat = workflow.patched(FLAT_TURNS)
        self._task_id = task.task_id or str(workflow.uuid4())
        self._input = task
        self._inbox[:0] = task.inbox
        self._listed = workflow.info().typed_search_attributes.get(BATON_STATUS)
        resumed = bool(task.transcript) or task.message_count > 0
        if resumed:  # continued as new: everything was loaded before
            agent, tools = task.agent, task.tools
            self._snippets, self._knowledge_prompt = task.snippets, task.knowledge_prompt
            self._transcript = [] if self._flat else list(task.transcript)
            self._seq = task.message_count or len(task.transcript)
            self._answer = task.answer or _last_answer(task.transcript)
            self._started_at = task.started_at or workflow.now()
            self._params = task.params
        else:
            begun: BegunTask = await workflow.execute_activity(
                activity_names.TASK_BEGIN,
                BeginTask(
                    task_id=self._task_id,
                    workflow_id=workflow.info().workflow_id,
                    project_id=task.project_id,
                    agent_id=task.agent_id,
                    message=task.message,
                    user_group_id=task.user_group_id,
                    load_agent=task.agent is None,
                    params=task.params,
                    parent_task_id=task.parent_task_id,
                    node=task.node,
                    conversation_of=task.conversation_of,
                    admit=True,
                ),
                result_type=BegunTask,
                start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
                retry_policy=policies.DB_WRITE_RETRY,
                summary="begin task",
            )
            agent, tools = task.agent or begun.agent, begun.tools
            self._snippets, self._knowledge_prompt = begun.snippets, begun.knowledge_prompt
            if not self._flat:
                self._transcript = [Message(role=MessageRole.user, content=task.message)]
            self._seq = 1
            self._started_at = workflow.now()
            self._params = task.params if begun.params is None else begun.params
            self._waiting_for_capacity = begun.waiting_for_capacity
            if task.seconds_per_message is None and task.tool_run_seconds is None:
                # Started without its plan's limits (a schedule, a workforce node): as begun.
                task = task.model_copy(
                    update={
                        "seconds_per_message": begun.seconds_per_message,
                        "tool_run_seconds": begun.tool_run_seconds,
                    }
                )
                self._input = task
        assert agent is not None
        if task.mcp_tools is None and agent.mcp:
            # Listed once: a replay, or a run continued as new, never asks the servers again.
            task = task.model_copy(update={"mcp_tools": await self._list_mcp_tools(task, agent)})
            self._input = task
        self._agent: AgentSpec = agent
        self._tools: dict[str, ToolSpec] = tools
        self._auto_runs: dict[str, int] = dict(task.auto_runs)
        self._spend = task.spend or TaskSpend()
        self._by_name = callable_tools(task, agent, tools)
        self._context = TaskContext(
            task_id=self._task_id,
            input=task,
            tools=tools,
            snippets=self._snippets,
            params=self._params,
            write_events=self._events,
            spend=self._spend,
        )
        self._deadline = self._started_at + timedelta(seconds=agent.time_budget_seconds)

        try:
            if self._waiting_for_capacity and workflow.patched(QUEUE_FOR_CAPACITY):
                await self._wait_for_capacity()
            self._system_prompt = _system_prompt(
                agent, self._params, self._snippets, self._knowledge_prompt
            )
            return await self._converse(resumed=resumed)
        except TaskStopped as stop:
            self._ending = True
            await self._set_status(stop.status, error=stop.error)
            if workflow.patched(FAIL_STOPPED_TASKS):
                # Failed in Temporal too, so its status filter and `ExecutionStatus="Failed"`
                # find the task; the reason is the failure's message.
                kind = "TaskTimedOut" if stop.status is TaskStatus.timed_out else "TaskFailed"
                raise ApplicationError(stop.error, type=kind, non_retryable=True) from None
            return AgentTaskResult(status=stop.status, error=stop.error)
        except asyncio.CancelledError:
            self._ending = True
            await self._set_status(TaskStatus.cancelled, error="cancelled")
            raise

    # Signals, updates and queries

    @workflow.update
    def post_message(self, message: UserMessage) -> str:
        self._inbox.append(message.content)
        return "queued"

    @post_message.validator
    def _still_listening(self, message: UserMessage) -> None:
        if self._ending:
            raise ApplicationError("the task is ending and takes no more messages", type="ending")

    @workflow.signal
    def send_message(self, message: UserMessage) -> None:
        """How messages arrived before `post_message`; kept for runs that still use it."""
        self._inbox.append(message.content)

    @workflow.signal(name=LLM_RETRYING_SIGNAL)
    def llm_retrying(self, retrying: LlmRetrying) -> None:
        """From the LLM activity, as an attempt fails and another is due: the Temporal UI
        says so until the call is over, as the task's `llm.retrying` events do."""
        if self._details_before_model is not None:
            workflow.set_current_details(_retrying_details(retrying))

    @workflow.signal(name=CREDITS_ARRIVED_SIGNAL)
    def credits_arrived(self) -> None:
        """From a grant or a plan change: a task paused `out-of-credits` tries again now."""
        self._credits_arrived = True

    @workflow.signal(name=CAPACITY_FREED_SIGNAL)
    def capacity_freed(self) -> None:
        """From the task that gave this waiting task its slot: ask for it now."""
        self._capacity_freed = True

    @workflow.update
    def decide(self, decision: Decision) -> str:
        self._decisions[decision.call_id] = decision
        return "accepted"

    @decide.validator
    def _known_call(self, decision: Decision) -> None:
        if decision.call_id not in self._pending or decision.call_id in self._decisions:
            raise ValueError(f"no tool call {decision.call_id!r} is waiting for approval")

    @workflow.query
    def state(self) -> TaskState:
        return TaskState(
            status=self._status,
            pending_approvals=list(self._pending.values()),
            queued_messages=len(self._inbox),
            iterations=self._iterations,
        )

    # The conversation

    async def _converse(self, *, resumed: bool) -> AgentTaskResult:
        """Turns until the task ends. A run continued as new resumes waiting for the next
        message: its predecessor had answered everything."""
        answer = self._answer if self._flat else _last_answer(self._transcript)
        while True:
            if not resumed:
                answer = self._answer = await self._turn()
            resumed = False
            if self._inbox:
                await self._append(Message(role=MessageRole.user, content=self._inbox.pop(0)))
                continue
            if self._idle_timeout_seconds <= 0:
                return await self._complete(answer)
            await self._set_status(TaskStatus.idle)
            if workflow.info().is_continue_as_new_suggested():
                self._continue_as_new()
            if self._flat:
                if not await self._wait_for_message():
                    return await self._complete(answer)
                await self._append(Message(role=MessageRole.user, content=self._inbox.pop(0)))
                continue
            try:
                await workflow.wait_condition(
                    lambda: bool(self._inbox),
                    timeout=timedelta(seconds=self._idle_timeout_seconds),
                )
            except TimeoutError:
                # A message may have come in with the timer: answer it rather than end.
                if not (self._inbox and workflow.patched(ANSWER_LATE_MESSAGES)):
                    return await self._complete(answer)
            await self._append(Message(role=MessageRole.user, content=self._inbox.pop(0)))

    async def _complete(self, answer: str) -> AgentTaskResult:
        self._ending = True
        await self._set_status(TaskStatus.completed)
        return AgentTaskResult(
            status=TaskStatus.completed, answer=answer, delegations=self._context.delegations
        )

    async def _wait_for_message(self) -> bool:
        """Idle until a message arrives (True) or the idle timeout passes (False). One timer
        at a time, never cancelled: a message that arrives leaves it running, and when an
        earlier idle's timer fires first it is set again for what is left. A conversation
        faster than its idle timeout costs no timer events per turn."""
        deadline = workflow.now() + timedelta(seconds=self._idle_timeout_seconds)
        while not self._inbox:
            timer = self._idle_timer
            if timer is None or timer.done():
                left = (deadline - workflow.now()).total_seconds()
                if left < 0.001:
                    return False
                timer = self._idle_timer = asyncio.create_task(workflow.sleep(left, summary="idle"))
            await workflow.wait_condition(self._message_or_timer)
        return True

    @property
    def _idle_timeout_seconds(self) -> float:
        """How long the task waits for a follow-up: not at all for a node run, which answers
        once."""
        return 0 if self._input.single_turn else self._agent.idle_timeout_seconds

    def _message_or_timer(self) -> bool:
        return bool(self._inbox) or self._idle_timer is None or self._idle_timer.done()

    async def _turn(self) -> str:
        """Model and tools until the model answers without calling a tool."""
        if self._flat:
            self._running()
        else:
            await self._set_status(TaskStatus.running)
        tool_calls_in_a_row = 0
        seconds = self._input.seconds_per_message
        if seconds is not None:
            self._message_deadline = workflow.now() + timedelta(seconds=seconds)
        for _ in range(self._agent.max_iterations):
            self._check_budget()
            if self._flat:
                await self._keep_to_spending_budget()
            self._iterations += 1
            response = await self._call_model()
            if self._flat:
                self._seq += 1  # the activity wrote its answer
            else:
                assistant = Message(
                    role=MessageRole.assistant,
                    content=response.content,
                    tool_calls=response.tool_calls,
                )
                await self._append(assistant, usage=response.usage)
            if not response.tool_calls:
                return response.content
            calls = response.tool_calls
            if self._flat and len(calls) > 1 and workflow.patched(TOOL_RESULTS_AS_THEY_COME):
                await self._run_calls_showing_each(calls)
                tool_calls_in_a_row += len(calls)
                if tool_calls_in_a_row >= self._agent.autonomy_limit:
                    return await self._check_in(tool_calls_in_a_row)
                continue
            results = await asyncio.gather(*(self._run_call(c) for c in response.tool_calls))
            for call, (result, outcome) in zip(response.tool_calls, results, strict=True):
                message = Message(
                    role=MessageRole.tool, content=result, tool_call_id=call.id, name=call.name
                )
                await self._append(message, events=[outcome] if outcome else [])
            tool_calls_in_a_row += len(response.tool_calls)
            if tool_calls_in_a_row >= self._agent.autonomy_limit:
                return await self._check_in(tool_calls_in_a_row)
        raise TaskStopped(
            TaskStatus.failed,
            f"the agent made {self._agent.max_iterations} model calls without a final answer "
            "(max_iterations)",
        )

    async def _check_in(self, tool_calls_in_a_row: int) -> str:
        note = (
            f"{SCRIPTED_LABEL if self._agent.model.startswith('scripted') else ''}"
            f"I made {tool_calls_in_a_row} tool calls in a row, my limit before checking "
            "with you. Shall I go on?"
        ).strip()
        await self._append(Message(role=MessageRole.assistant, content=note))
        return note

    async def _run_calls_showing_each(self, calls: list[ToolCall]) -> None:
        """Runs a turn's tool calls at once; a result is written as soon as its call is done
        while others still run or wait for approval (the last one goes with the next model
        call). Each keeps the place of its call in the conversation."""
        first_seq = self._seq
        self._seq += len(calls)
        pending = len(calls)

        async def one(index: int, call: ToolCall) -> None:
            nonlocal pending
            result, outcome = await self._run_call(call)
            pending -= 1
            self._writes.append(
                TaskMessageAppend(
                    task_id=self._task_id,
                    seq=first_seq + index,
                    message=Message(
                        role=MessageRole.tool, content=result, tool_call_id=call.id, name=call.name
                    ),
                    events=[outcome] if outcome else [],
                )
            )
            if pending:
                await self._record()

        await asyncio.gather(*(one(index, call) for index, call in enumerate(calls)))

    async def _call_model(self) -> LlmResponse:
        if self._flat:
            return await self._call_model_flat()
        messages = list(self._transcript)
        if self._system_prompt:
            messages.insert(0, Message(role=MessageRole.system, content=self._system_prompt))
        request = LlmRequest(
            model=self._agent.model,
            messages=messages,
            tools=[tool.definition for tool in self._by_name.values()],
            temperature=self._agent.temperature,
            max_tokens=self._agent.max_output_tokens,
        )
        try:
            response = await self._execute_model_call(
                LlmCall(
                    task_id=self._task_id,
                    request=request,
                    stream_key=f"llm:{workflow.info().run_id}:{len(self._transcript)}",
                    project_id=self._input.project_id,
                    integration=self._agent.integration,
                )
            )
        except ActivityError as exc:
            reraise_cancel(exc)
            self._check_message_time(exc)
            raise TaskStopped(TaskStatus.failed, f"the model call failed: {_cause(exc)}") from exc
        return response

    async def _call_model_flat(self) -> LlmResponse:
        """The model call that reads the conversation and writes its answer itself, with the
        messages and the status waiting to be written. A call the organisation cannot pay
        for pauses the task until credits arrive, then is made again."""
        while True:
            writes, self._writes = self._writes, []
            status, self._status_due = self._status_due, None
            idle_after_answer = self._idle_timeout_seconds > 0 and not self._inbox
            try:
                response = await self._execute_model_call(
                    LlmCall(
                        task_id=self._task_id,
                        request=LlmRequest(
                            model=self._agent.model,
                            messages=[],
                            tools=[tool.definition for tool in self._by_name.values()],
                            temperature=self._agent.temperature,
                            max_tokens=self._agent.max_output_tokens,
                        ),
                        stream_key=f"llm:{workflow.info().run_id}:{self._seq}",
                        project_id=self._input.project_id,
                        integration=self._agent.integration,
                        seq=self._seq,
                        system_prompt=self._system_prompt,
                        writes=writes,
                        status=status,
                        idle_after_answer=idle_after_answer,
                    )
                )
            except ActivityError as exc:
                # Written again (once: by seq) by the next call, or with the status that
                # ends the task.
                self._writes[:0] = writes
                reraise_cancel(exc)
                self._check_message_time(exc)
                if _failure_type(exc) == OUT_OF_CREDITS:
                    await self._wait_for_credits(_cause(exc))
                    continue
                raise TaskStopped(
                    TaskStatus.failed, f"the model call failed: {_cause(exc)}"
                ) from exc
            self._spend.vendor_micros += response.vendor_micros
            if self._status is TaskStatus.out_of_credits and status is not None:
                self._status = status  # the call wrote it: the task runs again
                self._list(status)
                workflow.set_current_details(status.value)
            if idle_after_answer and not response.tool_calls:
                self._status = TaskStatus.idle  # written by the activity with the answer
                workflow.set_current_details(TaskStatus.idle.value)
            return response

    async def _wait_for_credits(self, reason: str) -> None:
        """Paused in `out-of-credits` (not failed) until credits arrive (a grant or a plan
        change signals it) or `CREDITS_RECHECK` passes (a new period renews the allowance);
        the next call checks again. The time paused does not count against the task's time
        budget. A cancel ends the wait like any other."""
        self._credits_arrived = False
        if self._status is not TaskStatus.out_of_credits:
            await self._record(
                status=TaskStatus.out_of_credits, details=f"paused until credits arrive: {reason}"
            )
        paused_at = workflow.now()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._credits_arrived, timeout=CREDITS_RECHECK)
        paused = workflow.now() - paused_at
        self._deadline += paused
        self._started_at += paused
        self._pause_message_time(paused)
        # The next call writes it, unless it cannot be paid for either.
        self._status_due = TaskStatus.running

    async def _wait_for_capacity(self) -> None:
        """Queued ("waiting for capacity") while the organisation runs as many tasks as its
        plan's `max_concurrent_tasks`, until a task that ends hands this one its slot (and
        signals it) or the re-check timer passes (`CAPACITY_RECHECK`, doubling up to
        `CAPACITY_RECHECK_MAX`); each time the database says whether it was admitted. The
        time queued does not count against the task's time budget; a cancel ends the wait,
        and the cancelled status gives back its place."""
        await self._set_status(TaskStatus.queued, details=WAITING_FOR_CAPACITY)
        queued_at = workflow.now()
        recheck = CAPACITY_RECHECK
        while True:
            try:
                await workflow.wait_condition(lambda: self._capacity_freed, timeout=recheck)
            except TimeoutError:
                recheck = min(recheck * 2, CAPACITY_RECHECK_MAX)
            self._capacity_freed = False
            admission: Admission = await workflow.execute_activity(
                activity_names.TASK_ADMIT,
                AdmitTask(task_id=self._task_id),
                result_type=Admission,
                start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
                retry_policy=policies.DB_WRITE_RETRY,
                summary="admit task",
            )
            if admission.admitted:
                break
        queued = workflow.now() - queued_at
        self._deadline += queued
        self._started_at += queued

    async def _execute_model_call(self, call: LlmCall) -> LlmResponse:
        """The LLM activity; while its attempts fail and are retried, `llm_retrying` shows
        it in the current details, and what they said before is back once it is over."""
        self._details_before_model = workflow.get_current_details()
        # Every attempt together ends when the message's time does.
        left = None
        if self._message_deadline is not None:
            left = max(self._message_deadline - workflow.now(), timedelta(seconds=1))
        try:
            response: LlmResponse = await workflow.execute_activity(
                activity_names.LLM_CHAT,
                call,
                result_type=LlmResponse,
                schedule_to_close_timeout=left,
                start_to_close_timeout=policies.LLM_CALL_TIMEOUT,
                heartbeat_timeout=policies.LLM_HEARTBEAT_TIMEOUT,
                retry_policy=policies.LLM_RETRY,
                summary=f"llm {self._agent.model}",
            )
        finally:
            workflow.set_current_details(self._details_before_model)
            self._details_before_model = None
        return response

    async def _run_call(self, call: ToolCall) -> tuple[str, EventDraft | None]:
        """Runs one tool call (after approval when needed): what the model is told, and the
        event that ends the call (written with the tool message, saving a round trip)."""
        entry = self._by_name.get(call.name)
        if entry is None:
            return f"Error: there is no tool named {call.name!r}.", None
        if call.arguments_error is not None:
            return (
                f"Error: the arguments were not valid JSON ({call.arguments_error}). "
                "Call the tool again with a JSON object."
            ), None
        agent_tool = entry.policy
        arguments = dict(call.arguments)
        asked = bool(arguments.pop(NEEDS_APPROVAL_ARG, False))
        requested = EventDraft(
            type=EventType.tool_call_requested,
            data={"call_id": call.id, "tool": call.name, "arguments": arguments},
            key=f"call:{call.id}",
        )
        leading: list[EventDraft] = [requested]
        if entry.refusal is not None:
            await self._events(requested)
            return tool_failed(call, entry.refusal)
        if self._needs_approval(agent_tool, asked):
            decision = await self._await_decision(call, arguments, requested)
            if not decision.approve:
                reason = decision.reason or "no reason given"
                return f"The user rejected this call: {reason}.", None
            if decision.arguments is not None:
                arguments = decision.arguments
            leading = []
        else:
            self._auto_runs[agent_tool.tool_id] = self._auto_runs.get(agent_tool.tool_id, 0) + 1
        return await entry.run(self._context, call, arguments, leading)

    def _needs_approval(self, agent_tool: AgentTool, asked: bool) -> bool:
        if agent_tool.approval is Approval.required:
            return True
        if agent_tool.approval is Approval.agent_decides and asked:
            return True
        cap = agent_tool.max_auto_runs
        return cap is not None and self._auto_runs.get(agent_tool.tool_id, 0) >= cap

    async def _await_decision(
        self,
        call: ToolCall,
        arguments: dict[str, Any],
        requested: EventDraft,
        question: str | None = None,
    ) -> Decision:
        pending = PendingApproval(
            call_id=call.id, tool=call.name, arguments=arguments, question=question
        )
        self._pending[call.id] = pending
        asked = EventDraft(
            type=EventType.tool_approval_requested,
            data=pending.model_dump(mode="json"),
            key=f"approval:{call.id}",
        )
        waiting = f"waiting for approval of {_describe(pending)}"
        if self._flat:
            await self._record(
                events=[requested, asked], status=TaskStatus.waiting_approval, details=waiting
            )
        else:
            await self._events(requested, asked)
            await self._set_status(TaskStatus.waiting_approval, details=waiting)
        remaining = (self._deadline - workflow.now()).total_seconds()
        asked_at = workflow.now()
        try:
            await workflow.wait_condition(
                lambda: call.id in self._decisions, timeout=timedelta(seconds=max(remaining, 1))
            )
        except TimeoutError:
            raise TaskStopped(
                TaskStatus.timed_out, f"no decision on {call.name} within the time budget"
            ) from None
        self._pause_message_time(workflow.now() - asked_at)
        decision = self._decisions.pop(call.id)
        del self._pending[call.id]
        decided = EventDraft(
            type=EventType.tool_approval_decided,
            data=decision.model_dump(mode="json"),
            key=f"decided:{call.id}",
        )
        if self._flat:
            running = None if self._pending else TaskStatus.running
            await self._record(events=[decided], status=running)
            return decision
        await self._events(decided)
        if not self._pending:
            await self._set_status(TaskStatus.running)
        return decision

    async def _keep_to_spending_budget(self) -> None:
        """Before a model call: a task that has spent its agent's `max_credits_per_task` or
        `max_actions_per_task` asks a person whether to go on (a pending approval like a
        tool call's). Approved, it may spend as much again; rejected, it ends."""
        reached = self._spend.over_budget(self._agent)
        if reached is None:
            return
        number = self._spend.budget_raises + 1
        call = ToolCall(id=f"budget-{number}", name=BUDGET_APPROVAL, arguments=reached)
        requested = EventDraft(
            type=EventType.tool_call_requested,
            data={"call_id": call.id, "tool": call.name, "arguments": reached},
            key=f"call:{call.id}",
        )
        decision = await self._await_decision(
            call, reached, requested, question="budget reached: go on?"
        )
        if not decision.approve:
            raise TaskStopped(
                TaskStatus.failed,
                f"the task reached its budget ({_describe_spend(reached)}) and was not let go "
                f"on: {decision.reason or 'no reason given'}",
            )
        self._spend.budget_raises += 1

    # Bookkeeping

    def _check_budget(self) -> None:
        if workflow.now() >= self._deadline:
            raise TaskStopped(TaskStatus.timed_out, "the task ran out of its time budget")
        if self._message_deadline is not None and workflow.now() >= self._message_deadline:
            raise self._out_of_message_time()

    def _check_message_time(self, exc: ActivityError) -> None:
        """A model call cut short by the end of the message's time stops the task."""
        deadline = self._message_deadline
        if isinstance(exc.cause, ActivityTimeout) and deadline and workflow.now() >= deadline:
            raise self._out_of_message_time() from exc

    def _out_of_message_time(self) -> TaskStopped:
        return TaskStopped(
            TaskStatus.timed_out,
            "the agent took longer to answer a message than its plan's "
            f"agent_seconds_per_message ({self._input.seconds_per_message} s)",
        )

    def _pause_message_time(self, paused: timedelta) -> None:
        """Time spent waiting for a person or for credits is not the agent's."""
        if self._message_deadline is not None:
            self._message_deadline += paused

    async def _list_mcp_tools(self, task: AgentTaskInput, agent: AgentSpec) -> list[McpToolOffer]:
        """The tools of the agent's MCP servers; a server that cannot be listed offers none
        (the activity names it), and the task goes on without them."""
        try:
            listed: McpToolList = await workflow.execute_activity(
                activity_names.MCP_LIST_TOOLS,
                ListMcpTools(project_id=task.project_id, attachments=agent.mcp),
                result_type=McpToolList,
                start_to_close_timeout=policies.MCP_LIST_TIMEOUT,
                heartbeat_timeout=policies.MCP_HEARTBEAT_TIMEOUT,
                retry_policy=policies.MCP_RETRY,
                summary="list mcp tools",
            )
        except ActivityError as exc:
            reraise_cancel(exc)
            workflow.logger.warning("MCP tools not listed: %s", _cause(exc))
            return []
        return listed.tools

    def _continue_as_new(self) -> None:
        workflow.continue_as_new(
            AgentTaskInput(
                task_id=self._task_id,
                project_id=self._input.project_id,
                agent_id=self._input.agent_id,
                agent=self._agent,
                message="",
                user_group_id=self._input.user_group_id,
                transcript=[] if self._flat else self._transcript,
                tools=self._tools,
                started_at=self._started_at,
                auto_runs=self._auto_runs,
                params=self._params,
                snippets=self._snippets,
                knowledge_prompt=self._knowledge_prompt,
                inbox=self._inbox,
                message_count=self._seq if self._flat else 0,
                answer=self._answer if self._flat else "",
                parent_task_id=self._input.parent_task_id,
                node=self._input.node,
                workforce=self._input.workforce,
                single_turn=self._input.single_turn,
                delegation_depth=self._input.delegation_depth,
                mcp_tools=self._input.mcp_tools,
                spend=self._spend,
                seconds_per_message=self._input.seconds_per_message,
                tool_run_seconds=self._input.tool_run_seconds,
            )
        )

    async def _append(
        self,
        message: Message,
        usage: TokenUsage | None = None,
        events: list[EventDraft] | None = None,
    ) -> None:
        if self._flat:  # the next write carries it
            self._append_later(message, events)
            return
        seq = len(self._transcript)
        self._transcript.append(message)
        await workflow.execute_activity(
            activity_names.TASK_PUT_MESSAGE,
            TaskMessageAppend(
                task_id=self._task_id, seq=seq, message=message, usage=usage, events=events or []
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"save {message.role.value} message",
        )

    async def _events(self, *events: EventDraft, tool_runs: list[NewToolRun] | None = None) -> None:
        if self._flat:
            await self._record(events=list(events), tool_runs=tool_runs or [])
            return
        await workflow.execute_activity(
            activity_names.TASK_APPEND_EVENTS,
            AppendEvents(task_id=self._task_id, events=list(events), tool_runs=tool_runs or []),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"event {events[0].type.value}",
        )

    async def _set_status(
        self, status: TaskStatus, error: str | None = None, details: str | None = None
    ) -> None:
        if self._flat:
            changed = status is not self._status or error is not None or details is not None
            if changed or self._writes:
                await self._record(status=status if changed else None, error=error, details=details)
            return
        if status is self._status and error is None and details is None:
            return
        self._status = status
        workflow.upsert_search_attributes([BATON_STATUS.value_set(status.value)])
        workflow.set_current_details(details or status.value)
        await workflow.execute_activity(
            activity_names.TASK_SET_STATUS,
            TaskStatusUpdate(
                task_id=self._task_id,
                status=status,
                error=error,
                details={"details": details} if details else {},
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"status {status.value}",
        )

    # Bookkeeping of the flat path

    def _append_later(self, message: Message, events: list[EventDraft] | None = None) -> None:
        """Message `seq` is decided now and written by the next write (an LLM call's or a
        record's), with the events that belong just before it."""
        self._writes.append(
            TaskMessageAppend(
                task_id=self._task_id, seq=self._seq, message=message, events=events or []
            )
        )
        self._seq += 1

    def _running(self) -> None:
        """The task runs: the next LLM call writes it."""
        if self._status is not TaskStatus.running:
            self._status = self._status_due = TaskStatus.running
            self._list(TaskStatus.running)
            workflow.set_current_details(TaskStatus.running.value)

    def _list(self, status: TaskStatus) -> None:
        """BatonStatus changes only where a filter needs it (each upsert is a history
        event): `running` for a task that runs or is idle, `waiting-approval`, and the final
        statuses."""
        listed = TaskStatus.running if status is TaskStatus.idle else status
        if listed.value != self._listed:
            self._listed = listed.value
            workflow.upsert_search_attributes([BATON_STATUS.value_set(listed.value)])

    async def _record(
        self,
        *,
        events: list[EventDraft] | None = None,
        tool_runs: list[NewToolRun] | None = None,
        status: TaskStatus | None = None,
        error: str | None = None,
        details: str | None = None,
    ) -> None:
        """One local activity (one history marker) for the workflow's own writes, with the
        messages waiting to be written."""
        writes, self._writes = self._writes, []
        update = None
        if status is not None:
            self._status = status
            self._status_due = None
            self._list(status)
            workflow.set_current_details(details or status.value)
            update = TaskStatusUpdate(
                task_id=self._task_id,
                status=status,
                error=error,
                details={"details": details} if details else {},
            )
        what = status.value if status else (events[0].type.value if events else "messages")
        await workflow.execute_local_activity(
            activity_names.TASK_RECORD,
            TaskRecord(
                task_id=self._task_id,
                tool_runs=tool_runs or [],
                events=events or [],
                messages=writes,
                status=update,
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"record {what}",
        )


def _last_answer(transcript: list[Message]) -> str:
    return next((m.content for m in reversed(transcript) if m.role is MessageRole.assistant), "")


def _system_prompt(
    agent: AgentSpec, params: dict[str, Any], snippets: dict[str, str], knowledge: str
) -> str:
    """The agent's system prompt with its params and snippets filled in, then the rows of
    its prompt-mode knowledge."""
    try:
        prompt = render_with_params(agent.system_prompt, params, snippets)
        return "\n\n".join(part for part in (prompt, knowledge) if part)
    except TemplateError as exc:
        raise TaskStopped(
            TaskStatus.failed, f"the system prompt could not be rendered: {exc}"
        ) from exc


def _describe_spend(reached: dict[str, Any]) -> str:
    said = []
    if "max_credits" in reached:
        said.append(
            f"{reached['vendor_credits_spent']:g} of {reached['max_credits']:g} vendor credits"
        )
    if "max_actions" in reached:
        said.append(f"{reached['actions_spent']} of {reached['max_actions']} actions")
    return " and ".join(said)


def _describe(pending: PendingApproval) -> str:
    arguments = ", ".join(f"{k}={json.dumps(v)[:40]}" for k, v in pending.arguments.items())
    return f"{pending.tool}({arguments})"


def _retrying_details(retrying: LlmRetrying) -> str:
    at = retrying.next_attempt_at.strftime("%H:%M:%S UTC")
    return (
        f"model call failed (attempt {retrying.attempt}): {retrying.error[:300]}; retrying at {at}"
    )


def _failure_type(exc: ActivityError) -> str | None:
    cause = exc.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
