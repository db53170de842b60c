"""A worker process dies (SIGKILL, as in an OOM kill) with tool calls in flight: another
worker on the same task queue, new or already running, finishes its tasks and every side
effect happens once."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp, hit_count
from tests.processes import kill, wait_until
from tests.support import Tenant

# Heavy: a stack of processes each; under xdist they share one worker, one at a time.
# Killing and restarting processes, on timers: under xdist, while no other test runs.
pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.alone]

TWO_CALLS = "call effect\ncall effect"


def done_once(local_http: LocalHttp, calls: int) -> None:
    """Each tool call sent its effect under one idempotency key, however often the request
    was retried, so a receiver that honours the key performed it once."""
    assert len(local_http.effects) == calls, local_http.effects
    assert sum(local_http.effects.values()) == hit_count(local_http, "/effect")


async def test_a_worker_killed_mid_task_is_replaced_and_each_tool_call_takes_effect_once(
    stack: FaultStack, tenant: Tenant, local_http: LocalHttp
):
    local_http.reset()
    local_http.effects.clear()
    agent_id = await stack.effect_agent(tenant, local_http, seconds=2)
    first = stack.start_worker()
    tasks = [await stack.start_task(tenant, agent_id, TWO_CALLS) for _ in range(3)]
    await wait_until(lambda: local_http.in_flight >= 2, 60, "tool requests in flight")

    kill(first)
    retried_from = hit_count(local_http, "/effect")
    stack.start_worker()
    finished = await stack.wait_final(tenant, tasks, timeout=90)

    for task in finished:
        assert task["status"] == "completed", task["error"]
        assert [m["role"] for m in task["messages"]] == [
            "user",
            "assistant",
            "tool",
            "tool",
            "assistant",
        ]
        assert [m["content"] for m in task["messages"][2:4]] == ["true", "true"]
    # The calls cut short were sent again by the new worker, with the keys they had.
    assert hit_count(local_http, "/effect") > retried_from
    done_once(local_http, calls=6)


async def test_with_two_workers_the_survivor_takes_over_the_work_of_the_one_killed(
    stack: FaultStack, tenant: Tenant, local_http: LocalHttp
):
    local_http.reset()
    local_http.effects.clear()
    slow = await stack.effect_agent(tenant, local_http, seconds=4)
    quick = await stack.effect_agent(tenant, local_http, seconds=1)
    doomed = stack.start_worker()
    # Only one worker polls yet, so this task's tool call is certainly the doomed one's.
    first = await stack.start_task(tenant, slow, "call effect")
    await wait_until(lambda: local_http.in_flight >= 1, 60, "the first tool request")
    stack.start_worker()
    await asyncio.sleep(3)  # the survivor is up and polling
    later = [await stack.start_task(tenant, quick, TWO_CALLS) for _ in range(4)]
    await wait_until(lambda: local_http.in_flight >= 3, 60, "the later tool requests")

    kill(doomed)
    finished = await stack.wait_final(tenant, [first, *later], timeout=90)

    assert [t["status"] for t in finished] == ["completed"] * 5, [t["error"] for t in finished]
    assert all(t["messages"][-1]["role"] == "assistant" for t in finished)
    # The doomed worker's call was sent again by the survivor, under the same key.
    assert sum(local_http.effects.values()) > len(local_http.effects)
    done_once(local_http, calls=1 + 4 * 2)


async def test_a_worker_killed_while_the_model_thinks_is_replaced_long_before_the_call_timeout(
    stack: FaultStack, tenant: Tenant
):
    """The LLM call heartbeats while it waits for the model's first word, so the call lost
    with its worker is retried after the heartbeat timeout (20 s), not the call's own (5 min)."""
    model = FakeOpenAI()
    model.start()
    try:
        model.queue(Reply(delay=3600))  # the dead worker's call: no answer for an hour
        model.reply_text("Recovered", " after the crash.")
        integration = await stack.client.post(
            tenant.url("/integrations"),
            json={"name": "main", "kind": "openai", "base_url": model.base_url, "api_key": "sk-x"},
        )
        assert integration.status_code == 201, integration.text
        agent = await stack.client.post(
            tenant.url("/agents"),
            json={"name": "Thinker", "model": "openai:gpt-test", "integration": "main"},
        )
        assert agent.status_code == 201, agent.text
        first = stack.start_worker()
        task = await stack.start_task(tenant, agent.json()["id"], "Take your time.")
        await wait_until(lambda: len(model.requests) >= 1, 60, "the model call")

        kill(first)
        stack.start_worker()
        [finished] = await stack.wait_final(tenant, [task], timeout=90)

        assert finished["status"] == "completed", finished["error"]
        assert finished["messages"][-1]["content"] == "Recovered after the crash."
        assert len(model.requests) == 2
    finally:
        model.stop()
