"""A turn costs a task's workflow history a constant: at most 12 events for a plain answer and 30
for a turn with one tool call, and the LLM activity's input does not grow with the
conversation, which the activity reads from the database. Event counts are exact, read from
the real Temporal server; and the LLM activity still serves a run recorded before, whose
input holds the whole conversation."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.llm import LlmActivities
from baton import activity_names
from baton.db.repositories import tasks as task_repo
from baton.domain.llm import LlmRequest, Message, MessageRole
from baton.domain.tasks import LlmCall, TaskMessageAppend, TaskStatus
from tests.support import Tenant, decoded
from tests.support.database import stored_task

ECHO_TURN_EVENTS = 12
TOOL_TURN_EVENTS = 30
# The last event of a history whose workflow waits for a message.
WAITING = (EventType.EVENT_TYPE_TIMER_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)


class Chat:
    def __init__(
        self, api: httpx.AsyncClient, tenant: Tenant, env: WorkflowEnvironment, task: Any
    ) -> None:
        self.api, self.tenant, self.client = api, tenant, env.client
        self.task_id: str = task["id"]
        self.handle: WorkflowHandle[Any, Any] = env.client.get_workflow_handle(task["workflow_id"])
        self.messages = 1

    async def answered(self) -> int:
        """Waits for the answer to the last message and for the workflow to be waiting
        again; the history's length then."""
        async with asyncio.timeout(30):
            while True:
                task = (
                    await self.api.get(
                        self.tenant.url(f"/tasks/{self.task_id}"), headers=self.tenant.headers
                    )
                ).json()
                messages = task["messages"]
                last = messages[-1]
                if (
                    task["status"] == "idle"
                    and len(messages) > self.messages
                    and last["role"] == "assistant"
                ):
                    events = (await self.handle.fetch_history()).events
                    if events[-1].event_type in WAITING:
                        self.messages = len(messages)
                        return len(events)
                await asyncio.sleep(0.05)

    async def say(self, text: str) -> int:
        self.messages += 1
        response = await self.api.post(
            self.tenant.url(f"/tasks/{self.task_id}/messages"),
            json={"message": text},
            headers=self.tenant.headers,
        )
        assert response.status_code == 202, response.text
        return await self.answered()

    async def llm_inputs(self) -> list[LlmCall]:
        """Every LLM activity input in the history, decoded."""
        calls = []
        for event in (await self.handle.fetch_history()).events:
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name == activity_names.LLM_CHAT:
                [payload] = scheduled.input.payloads
                plain = await decoded(self.client, payload)
                calls.append(LlmCall.model_validate_json(plain.data))
        return calls


async def new_chat(
    api: httpx.AsyncClient, tenant: Tenant, env: WorkflowEnvironment, **spec: Any
) -> Chat:
    agent = await api.post(
        tenant.url("/agents"),
        json={"name": "Chatty", "idle_timeout_seconds": 3600, **spec},
        headers=tenant.headers,
    )
    assert agent.status_code == 201, agent.text
    started = await api.post(
        tenant.url(f"/agents/{agent.json()['id']}/tasks"),
        json={"message": "turn 1"},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    return Chat(api, tenant, env, started.json())


async def test_an_echo_turn_costs_at_most_12_events_and_the_llm_input_stays_flat(
    worker: Worker, api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment
):
    chat = await new_chat(api, tenant, temporal_env, model="scripted:echo")
    lengths = [await chat.answered()]
    for turn in range(2, 11):
        lengths.append(await chat.say(f"turn {turn}"))
    per_turn = [after - before for before, after in itertools.pairwise(lengths)]
    assert max(per_turn) <= ECHO_TURN_EVENTS, per_turn

    calls = await chat.llm_inputs()
    assert len(calls) == 10
    assert all(call.request.messages == [] for call in calls)
    assert [call.seq for call in calls] == list(range(1, 20, 2))
    # Turn 10's input is turn 2's but for a few digits: nothing of the conversation in it.
    sizes = [len(call.model_dump_json()) for call in calls]
    assert abs(sizes[9] - sizes[1]) <= 16, sizes

    task = (await api.get(tenant.url(f"/tasks/{chat.task_id}"), headers=tenant.headers)).json()
    assert [m["content"] for m in task["messages"] if m["role"] == "user"] == [
        f"turn {n}" for n in range(1, 11)
    ]
    assert task["messages"][-1]["content"].endswith("You said: turn 10")
    await chat.handle.cancel()


async def test_a_turn_with_one_tool_call_costs_at_most_30_events(
    worker: Worker, api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment
):
    tool = await api.post(
        tenant.url("/tools"),
        json={
            "name": "echo",
            "params": [{"name": "text"}],
            "steps": [{"name": "t", "type": "template", "template": "got {{ params.text }}"}],
        },
        headers=tenant.headers,
    )
    chat = await new_chat(
        api, tenant, temporal_env, model="scripted:tools", tools=[{"tool_id": tool.json()["id"]}]
    )
    before = await chat.answered()
    after = await chat.say('call echo {"text": "one"}')
    assert after - before <= TOOL_TURN_EVENTS

    task = (await api.get(tenant.url(f"/tasks/{chat.task_id}"), headers=tenant.headers)).json()
    roles = [m["role"] for m in task["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant"]
    assert task["messages"][-1]["content"].endswith("echo: got one")
    await chat.handle.cancel()


async def test_the_llm_activity_writes_its_answer_once_and_still_serves_an_old_run(
    session_factory: async_sessionmaker[AsyncSession], tenant: Tenant
):
    task_id = await stored_task(session_factory, tenant, agent_name="Echo", first_message="hello")
    activities = LlmActivities(session_factory=session_factory)
    env = ActivityEnvironment()
    follow_up = Message(role=MessageRole.user, content="again")
    call = LlmCall(
        task_id=task_id,
        request=LlmRequest(model="scripted:echo", messages=[]),
        stream_key="llm:run:2",
        seq=3,
        writes=[
            TaskMessageAppend(
                task_id=task_id, seq=1, message=Message(role=MessageRole.assistant, content="hi")
            ),
            TaskMessageAppend(task_id=task_id, seq=2, message=follow_up),
        ],
        status=TaskStatus.running,
        idle_after_answer=True,
    )
    first = await env.run(activities.chat, call)
    again = await env.run(activities.chat, call)  # a retry after the answer was written
    assert first.content.endswith("You said: again")
    assert again.content == first.content
    async with session_factory() as session:
        messages = await task_repo.list_messages(session=session, task_id=task_id)
        task = await task_repo.get_task_by_id(session=session, task_id=task_id)
    assert [m.content for m in messages] == ["hello", "hi", "again", first.content]
    assert task.status == "idle"
    assert task.output_tokens > 0

    # A run recorded before sends the conversation itself, and nothing is written.
    old = LlmCall(
        task_id=task_id,
        request=LlmRequest(
            model="scripted:echo", messages=[Message(role=MessageRole.user, content="old way")]
        ),
        stream_key="llm:old-run:1",
    )
    answer = await env.run(activities.chat, old)
    assert answer.content.endswith("You said: old way")
    async with session_factory() as session:
        assert await task_repo.count_messages(session=session, task_id=task_id) == 4
