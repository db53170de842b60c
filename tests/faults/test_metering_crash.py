"""Metering under crashes: a worker is killed (SIGKILL) 20 times while agents' tool calls
are in flight (four workers poll; each round the oldest dies), and afterwards the
organisation has been charged exactly one action per tool run: none lost with a worker that
died, none charged twice by the one that retried."""

from __future__ import annotations

from collections import deque
from functools import partial

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.tables import CreditEntry, ToolRun
from baton.domain.credits import tool_run_key
from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp, hit_count
from tests.processes import kill, wait_until
from tests.support import Tenant

# Heavy: a stack of processes each; under xdist they share one worker, one at a time.
# Killing and restarting processes, on timers: under xdist, while no other test runs.
pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.alone]

KILLS = 20
THREE_CALLS = "call effect\ncall effect\ncall effect"


def more_hits_than(local_http: LocalHttp, hits: int) -> bool:
    return hit_count(local_http, "/effect") > hits


async def test_killed_twenty_times_the_worker_charges_each_tool_run_exactly_once(
    stack: FaultStack,
    tenant: Tenant,
    local_http: LocalHttp,
    session_factory: async_sessionmaker[AsyncSession],
):
    local_http.reset()
    local_http.effects.clear()
    # Each kill costs the calls it cuts short an attempt; with twenty, a call may be cut
    # short more often than the default two retries allow.
    agent_id = await stack.effect_agent(tenant, local_http, seconds=2, retries=10)
    # Four workers at a time, started one a round: each round kills the oldest, which has
    # had time to take work, while its successors are still starting.
    workers = deque(stack.start_worker() for _ in range(4))
    tasks: list[str] = []
    for _ in range(KILLS):
        hits = hit_count(local_http, "/effect")
        tasks.append(await stack.start_task(tenant, agent_id, THREE_CALLS))
        await wait_until(partial(more_hits_than, local_http, hits), 90, "a tool call")
        workers.append(stack.start_worker())
        kill(workers.popleft())
    finished = await stack.wait_final(tenant, tasks, timeout=180)

    assert [task["status"] for task in finished] == ["completed"] * KILLS
    results = [m["content"] for task in finished for m in task["messages"] if m["role"] == "tool"]
    assert results == ["true"] * 3 * KILLS, results
    async with session_factory() as session:
        runs = set(
            await session.scalars(select(ToolRun.id).where(ToolRun.project_id == tenant.project_id))
        )
        debits = list(
            await session.scalars(
                select(CreditEntry).where(
                    CreditEntry.org_id == tenant.org_id, CreditEntry.kind == "debit"
                )
            )
        )
    assert len(runs) == 3 * KILLS
    assert sorted(d.idempotency_key for d in debits) == sorted(tool_run_key(r) for r in runs)
    assert {(d.currency, d.amount) for d in debits} == {("actions", 1_000_000)}
    # Each call's effect was sent under its own key; the calls the dead workers left were
    # sent again under theirs: the kills did cut work short.
    assert len(local_http.effects) == 3 * KILLS
    assert max(local_http.effects.values()) > 1, local_http.effects
