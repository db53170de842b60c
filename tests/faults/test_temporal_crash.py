"""The Temporal dev server dies (SIGKILL) with tasks running and comes back on the same
SQLite file and port: the worker and the API reconnect by themselves, and every task
finishes with its whole transcript and each side effect once."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp, hit_count
from tests.processes import wait_until
from tests.support import Tenant

# Heavy: a stack of processes each; under xdist they share one worker, one at a time.
# Killing and restarting processes, on timers: under xdist, while no other test runs.
pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.alone]


async def test_tasks_running_when_temporal_is_killed_finish_after_it_restarts(
    stack: FaultStack, tenant: Tenant, local_http: LocalHttp
):
    local_http.reset()
    local_http.effects.clear()
    agent_id = await stack.effect_agent(tenant, local_http, seconds=1)
    stack.start_worker()
    tasks = [await stack.start_task(tenant, agent_id, "call effect\ncall effect") for _ in range(4)]
    await wait_until(lambda: local_http.in_flight >= 2, 60, "tool requests in flight")

    stack.temporal.kill()
    await asyncio.sleep(2)  # requests in flight finish while the server is away
    await stack.temporal.start()
    # The API's client reconnects too: a task started now runs.
    tasks.append(await stack.start_task(tenant, agent_id, "call effect"))
    finished = await stack.wait_final(tenant, tasks, timeout=120)

    assert [t["status"] for t in finished] == ["completed"] * 5, stack.logs()
    for task in finished[:4]:
        roles = [m["role"] for m in task["messages"]]
        assert roles == ["user", "assistant", "tool", "tool", "assistant"], task
    late = [m["role"] for m in finished[4]["messages"]]
    assert late == ["user", "assistant", "tool", "assistant"]
    assert len(local_http.effects) == 4 * 2 + 1
    assert sum(local_http.effects.values()) == hit_count(local_http, "/effect")
