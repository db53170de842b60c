"""PostgreSQL restarts while tasks run: the activities whose writes fail retry, the pools of
the worker and the API drop their dead connections, and every task finishes."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp, hit_count
from tests.processes import wait_until
from tests.support import Tenant

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("BATON_TEST_DATABASE_URL", "").startswith("postgresql"),
        reason="restarts the PostgreSQL server: runs when the suite runs on PostgreSQL",
    ),
    # Every other test's connections drop with the server: under xdist none may run meanwhile.
    pytest.mark.alone,
    pytest.mark.xdist_group("faults"),
]


def restart_postgres() -> None:
    """The local cluster, as an operator restarts it (its clients' connections all drop)."""
    (version,) = os.listdir("/etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def postgres_cluster() -> None:
    if not Path("/etc/postgresql").is_dir() or os.geteuid() != 0:
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster, as root")


async def test_tasks_running_while_postgres_restarts_finish(
    postgres_cluster: None, stack: FaultStack, tenant: Tenant, local_http: LocalHttp
):
    local_http.reset()
    local_http.effects.clear()
    agent_id = await stack.effect_agent(tenant, local_http, seconds=2)
    stack.start_worker()
    tasks = [await stack.start_task(tenant, agent_id, "call effect\ncall effect") for _ in range(3)]
    await wait_until(lambda: local_http.in_flight >= 2, 60, "tool requests in flight")

    await asyncio.to_thread(restart_postgres)
    # The API's pool recovered: a task starts (its rows are written) after the restart.
    tasks.append(await stack.start_task(tenant, agent_id, "call effect"))
    finished = await stack.wait_final(tenant, tasks, timeout=120)

    assert [t["status"] for t in finished] == ["completed"] * 4, stack.logs()
    for task in finished:
        assert task["messages"][-1]["role"] == "assistant"
        assert task["messages"][-2]["content"] == "true"
    assert len(local_http.effects) == 3 * 2 + 1
    assert sum(local_http.effects.values()) == hit_count(local_http, "/effect")
