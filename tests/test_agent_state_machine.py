"""The agent loop's state machine on Temporal's time-skipping test server: idle timeouts,
the time budget, approvals, the autonomy limit, waiting for capacity and for credits.

The workflows are the production ones (AgentTaskWorkflow, and ToolRunWorkflow for the tool
calls); the activities are functions registered under the production activity names, which
answer what each test scripts and record what the workflow asked of them. A timer of an hour
passes in no time, so each test checks the time a wait took on the workflow's clock (its
history's timestamps) instead of waiting for it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton import activity_names, temporal
from baton.domain.agents import AgentSpec
from baton.domain.capacity import CAPACITY_RECHECK, WAITING_FOR_CAPACITY, Admission, AdmitTask
from baton.domain.credits import CREDITS_RECHECK, OUT_OF_CREDITS
from baton.domain.events import AppendEvents, EventDraft
from baton.domain.llm import LlmResponse, MessageRole, ToolCall
from baton.domain.models import SCRIPTED_LABEL
from baton.domain.tasks import (
    AgentTaskInput,
    AgentTaskResult,
    BeginTask,
    BegunTask,
    Decision,
    LlmCall,
    TaskMessageAppend,
    TaskRecord,
    TaskState,
    TaskStatus,
    TaskStatusUpdate,
    UserMessage,
)
from baton.domain.tool_runs import ToolRunFinish
from baton.domain.tools import ToolSpec
from baton.search_attributes import SEARCH_ATTRIBUTES
from baton.settings import Settings
from tests.support.temporal import venv_binary
from worker import workflow_runners
from workflows.agent_task import AgentTaskWorkflow
from workflows.tool_run import ToolRunWorkflow

pytestmark = pytest.mark.xdist_group("time-skipping")

TOOL_ID = "tool-shout"
SHOUT = ToolSpec.model_validate(
    {
        "name": "shout",
        "params": [{"name": "text", "type": "text"}],
        "steps": [{"name": "loud", "type": "template", "template": "{{ params.text }}!"}],
    }
)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    settings = Settings(secret_key="state-machine-tests-" + "k" * 32)
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=temporal.data_converter(settings),
        test_server_existing_path=venv_binary("temporal-test-server"),
    )
    try:
        # As `baton up` registers them (the test server has no ListSearchAttributes, which
        # baton.temporal.ensure_search_attributes reads first).
        await environment.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=environment.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for key in SEARCH_ATTRIBUTES
                },
            )
        )
        yield environment
    finally:
        await environment.shutdown()


def answer(text: str) -> LlmResponse:
    return LlmResponse(content=text, model="scripted:tools")


def call(text: str, *, tool: str = "shout") -> LlmResponse:
    arguments = {"text": text}
    call_id = f"call-{uuid.uuid4().hex[:8]}"
    return LlmResponse(
        content="", tool_calls=[ToolCall(id=call_id, name=tool, arguments=arguments)], model="x"
    )


@dataclass
class FakeBaton:
    """The activities a task's workflows call, under their production names. `replies` are
    the model's answers in order (an Exception is raised instead); `admit_on` is the
    admission check that lets a waiting task in (its number, from 1)."""

    replies: list[LlmResponse | Exception]
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    waiting_for_capacity: bool = False
    admit_on: int = 1
    statuses: list[tuple[TaskStatus, dict[str, Any]]] = field(default_factory=list)
    events: list[EventDraft] = field(default_factory=list)
    model_calls: list[LlmCall] = field(default_factory=list)
    admissions: int = 0
    finished_runs: list[ToolRunFinish] = field(default_factory=list)

    @property
    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name=activity_names.TASK_BEGIN)
        async def begin(begin: BeginTask) -> BegunTask:
            return BegunTask(tools=self.tools, waiting_for_capacity=self.waiting_for_capacity)

        @activity.defn(name=activity_names.TASK_SET_STATUS)
        async def set_status(update: TaskStatusUpdate) -> None:
            self.statuses.append((update.status, update.details))

        @activity.defn(name=activity_names.TASK_PUT_MESSAGE)
        async def put_message(append: TaskMessageAppend) -> None:
            self.events.extend(append.events)

        @activity.defn(name=activity_names.TASK_APPEND_EVENTS)
        async def append_events(append: AppendEvents) -> None:
            self.events.extend(append.events)

        @activity.defn(name=activity_names.TASK_RECORD)
        async def record(record: TaskRecord) -> None:
            self.events.extend(record.events)
            for message in record.messages:
                self.events.extend(message.events)
            if record.status is not None:
                self.statuses.append((record.status.status, record.status.details))

        @activity.defn(name=activity_names.TASK_ADMIT)
        async def admit(request: AdmitTask) -> Admission:
            self.admissions += 1
            return Admission(admitted=self.admissions >= self.admit_on)

        @activity.defn(name=activity_names.LLM_CHAT)
        async def chat(llm_call: LlmCall) -> LlmResponse:
            self.model_calls.append(llm_call)
            if llm_call.status is not None:
                self.statuses.append((llm_call.status, {}))
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            if llm_call.idle_after_answer and not reply.tool_calls:
                self.statuses.append((TaskStatus.idle, {}))
            return reply

        @activity.defn(name=activity_names.TOOL_RUN_FINISH)
        async def finish_run(finish: ToolRunFinish) -> None:
            self.finished_runs.append(finish)

        return [begin, set_status, put_message, append_events, record, admit, chat, finish_run]

    def written_to_model(self, role: MessageRole) -> list[str]:
        """What the task wrote for the model, in order: the messages model calls carried."""
        return [
            write.message.content
            for model_call in self.model_calls
            for write in model_call.writes
            if write.message.role is role
        ]


@dataclass
class Run:
    handle: WorkflowHandle[AgentTaskWorkflow, AgentTaskResult]
    fake: FakeBaton
    env: WorkflowEnvironment

    async def result(self) -> AgentTaskResult:
        return await self.handle.result()

    async def failure(self) -> ApplicationError:
        with pytest.raises(WorkflowFailureError) as failed:
            await self.handle.result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError), cause
        return cause

    async def state_when(self, ready: Callable[[TaskState], bool]) -> TaskState:
        """Queries the task (which skips no time) until its state is `ready`."""
        async with asyncio.timeout(20):
            while True:
                state = await self.handle.query(AgentTaskWorkflow.state)
                if ready(state):
                    return state
                await asyncio.sleep(0.05)

    async def decide(self, **decision: Any) -> None:
        state = await self.state_when(lambda s: bool(s.pending_approvals))
        [pending] = state.pending_approvals
        await self.handle.execute_update(
            AgentTaskWorkflow.decide, Decision(call_id=pending.call_id, **decision)
        )

    async def elapsed(self) -> timedelta:
        """The time the run took on the workflow's clock."""
        history = await self.handle.fetch_history()
        first, last = history.events[0].event_time, history.events[-1].event_time
        return last.ToDatetime() - first.ToDatetime()


@pytest.fixture
async def run_task(env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
    """Starts a task of an agent (AgentSpec fields; `task`: more AgentTaskInput fields) on a
    worker of its own with `fake`'s activities; the worker stops with the test."""
    workers: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(
        fake: FakeBaton, message: str = "hello", task: dict[str, Any] | None = None, **agent: Any
    ) -> Run:
        queue = f"state-machine-{uuid.uuid4()}"
        sandbox, unsandboxed = workflow_runners(Settings())
        worker = Worker(
            env.client,
            task_queue=queue,
            workflows=[AgentTaskWorkflow, ToolRunWorkflow],
            activities=fake.activities,
            workflow_runner=sandbox,
            unsandboxed_workflow_runner=unsandboxed,
        )
        workers.append((worker, asyncio.create_task(worker.run())))
        task_id = str(uuid.uuid4())
        spec = AgentSpec.model_validate({"name": "Agent", "model": "scripted:tools", **agent})
        handle = await env.client.start_workflow(
            AgentTaskWorkflow.run,
            AgentTaskInput(
                task_id=task_id,
                project_id="project",
                agent_id="agent",
                agent=spec,
                message=message,
                **(task or {}),
            ),
            id=f"task-{task_id}",
            task_queue=queue,
        )
        return Run(handle, fake, env)

    yield start
    for worker, running in workers:
        await worker.shutdown()
        await running


def shout_tool(**policy: Any) -> list[dict[str, Any]]:
    return [{"tool_id": TOOL_ID, **policy}]


async def test_a_task_without_an_idle_timeout_completes_with_its_first_answer(run_task):
    fake = FakeBaton(replies=[answer("hi there")])
    run = await run_task(fake)

    result = await run.result()

    assert (result.status, result.answer) == (TaskStatus.completed, "hi there")
    assert [status for status, _ in fake.statuses][-1] is TaskStatus.completed
    assert len(fake.model_calls) == 1


async def test_an_idle_task_answers_a_follow_up_then_ends_an_idle_timeout_later(run_task):
    fake = FakeBaton(replies=[answer("first"), answer("second")])
    run = await run_task(fake, idle_timeout_seconds=3600)

    await run.state_when(lambda s: s.status is TaskStatus.idle)
    await run.handle.execute_update(AgentTaskWorkflow.post_message, UserMessage(content="more"))
    await run.state_when(lambda s: s.status is TaskStatus.idle and s.iterations == 2)
    result = await run.result()

    assert (result.status, result.answer) == (TaskStatus.completed, "second")
    assert fake.written_to_model(MessageRole.user) == ["more"]
    # Ended by the idle timer: an hour on the workflow's clock, skipped here.
    assert timedelta(hours=1) <= await run.elapsed() < timedelta(hours=1, minutes=5)
    assert [status for status, _ in fake.statuses][-2:] == [TaskStatus.idle, TaskStatus.completed]


async def test_an_approved_call_runs_and_the_model_reads_its_result(run_task):
    fake = FakeBaton(replies=[call("quiet"), answer("it said quiet!")], tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(approval="required"))

    state = await run.state_when(lambda s: bool(s.pending_approvals))
    assert state.status is TaskStatus.waiting_approval
    assert state.pending_approvals[0].arguments == {"text": "quiet"}
    assert not fake.finished_runs  # nothing ran before the decision
    await run.decide(approve=True)
    result = await run.result()

    assert (result.status, result.answer) == (TaskStatus.completed, "it said quiet!")
    [finished] = fake.finished_runs
    assert (finished.status.value, finished.output) == ("succeeded", "quiet!")
    assert fake.written_to_model(MessageRole.tool) == ["quiet!"]
    statuses = [status for status, _ in fake.statuses]
    decided = statuses.index(TaskStatus.waiting_approval)
    assert TaskStatus.running in statuses[decided:]  # running again once decided


async def test_an_approval_with_edited_arguments_runs_with_those(run_task):
    fake = FakeBaton(replies=[call("quiet"), answer("ok")], tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(approval="required"))

    await run.decide(approve=True, arguments={"text": "edited"})
    await run.result()

    assert fake.written_to_model(MessageRole.tool) == ["edited!"]


async def test_a_rejected_call_does_not_run_and_the_model_is_told_why(run_task):
    fake = FakeBaton(replies=[call("quiet"), answer("understood")], tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(approval="required"))

    await run.decide(approve=False, reason="not today")
    result = await run.result()

    assert result.answer == "understood"
    assert fake.finished_runs == []
    assert fake.written_to_model(MessageRole.tool) == ["The user rejected this call: not today."]


async def test_an_undecided_approval_times_the_task_out_at_its_time_budget(run_task):
    fake = FakeBaton(replies=[call("quiet")], tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(approval="required"), time_budget_seconds=600)

    failure = await run.failure()

    assert failure.type == "TaskTimedOut"
    assert "no decision on shout within the time budget" in failure.message
    assert fake.statuses[-1][0] is TaskStatus.timed_out
    assert fake.finished_runs == []
    assert timedelta(minutes=10) <= await run.elapsed() < timedelta(minutes=11)


async def test_the_autonomy_limit_stops_a_run_of_tool_calls_to_check_in(run_task):
    replies: list[LlmResponse | Exception] = [call(f"n{i}") for i in range(5)]
    fake = FakeBaton(replies=replies, tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(), autonomy_limit=3)

    result = await run.result()

    assert result.status is TaskStatus.completed
    assert result.answer == (
        f"{SCRIPTED_LABEL}I made 3 tool calls in a row, my limit before checking with you. "
        "Shall I go on?"
    )
    assert [finished.output for finished in fake.finished_runs] == ["n0!", "n1!", "n2!"]
    assert len(fake.model_calls) == 3 and len(fake.replies) == 2


async def test_max_auto_runs_asks_for_approval_once_the_automatic_runs_are_used(run_task):
    replies: list[LlmResponse | Exception] = [call("a"), call("b"), answer("done")]
    fake = FakeBaton(replies=replies, tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(max_auto_runs=1))

    state = await run.state_when(lambda s: bool(s.pending_approvals))
    assert state.pending_approvals[0].arguments == {"text": "b"}
    assert [finished.output for finished in fake.finished_runs] == ["a!"]
    await run.decide(approve=True)
    assert (await run.result()).answer == "done"
    assert [finished.output for finished in fake.finished_runs] == ["a!", "b!"]


async def test_a_turn_without_a_final_answer_fails_at_max_iterations(run_task):
    replies: list[LlmResponse | Exception] = [call(f"n{i}") for i in range(3)]
    fake = FakeBaton(replies=replies, tools={TOOL_ID: SHOUT})
    run = await run_task(fake, tools=shout_tool(), max_iterations=3)

    failure = await run.failure()

    assert failure.type == "TaskFailed"
    assert "made 3 model calls without a final answer (max_iterations)" in failure.message
    assert fake.statuses[-1][0] is TaskStatus.failed


async def test_a_task_over_capacity_waits_queued_and_starts_when_admitted(run_task):
    fake = FakeBaton(replies=[answer("at last")], waiting_for_capacity=True, admit_on=3)
    run = await run_task(fake)

    result = await run.result()

    assert result.answer == "at last"
    assert fake.admissions == 3
    assert fake.statuses[0] == (TaskStatus.queued, {"details": WAITING_FOR_CAPACITY})
    # Re-checked after 2, then 4 more minutes (the wait doubles): admitted at the third.
    waited = CAPACITY_RECHECK + 2 * CAPACITY_RECHECK + 4 * CAPACITY_RECHECK
    assert waited <= await run.elapsed() < waited + timedelta(minutes=1)
    assert len(fake.model_calls) == 1  # the model is called only once it is admitted


async def test_a_call_the_organisation_cannot_pay_pauses_the_task_until_credits_are_rechecked(
    run_task,
):
    unpaid = ApplicationError("out of vendor credits", type=OUT_OF_CREDITS, non_retryable=True)
    fake = FakeBaton(replies=[unpaid, answer("paid now")])
    run = await run_task(fake)

    result = await run.result()

    assert (result.status, result.answer) == (TaskStatus.completed, "paid now")
    statuses = [status for status, _ in fake.statuses]
    assert TaskStatus.out_of_credits in statuses
    assert TaskStatus.failed not in statuses
    # The call after the pause writes `running` again.
    assert fake.model_calls[1].status is TaskStatus.running
    assert CREDITS_RECHECK <= await run.elapsed() < CREDITS_RECHECK + timedelta(minutes=1)


async def test_a_run_continued_as_new_answers_the_follow_up_it_carried_then_idles(run_task):
    """What continue-as-new hands on (the test server never suggests it): the count of
    messages, the last answer and a follow-up accepted before the switch."""
    fake = FakeBaton(replies=[answer("answered after the switch")])
    carried = {"message_count": 2, "answer": "before the switch", "inbox": ["carried over"]}
    run = await run_task(fake, task=carried, idle_timeout_seconds=60)

    result = await run.result()

    assert result.answer == "answered after the switch"
    [model_call] = fake.model_calls
    assert model_call.seq == 3  # after the two messages its predecessor wrote and the follow-up
    assert [write.message.content for write in model_call.writes] == ["carried over"]
    assert timedelta(seconds=60) <= await run.elapsed() < timedelta(minutes=2)
