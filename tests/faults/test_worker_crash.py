"""A worker process dies (SIGKILL, as in an OOM kill) with tool calls in flight: another
worker on the same task queue, new or already running, finishes its tasks and every side
effect happens once."""

from __future__ import annotations

import asyncio

from tests.conftest import Tenant
from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp, hit_count
from tests.processes import kill, wait_until

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
