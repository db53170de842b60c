"""A plan's `history_retention_days`: the worker's cleanup deletes an organisation's finished
tasks (with their messages and events) and tool runs (with their steps) older than that, and
nothing else: work still going on, newer history, and organisations whose plan keeps all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute
from temporalio.testing import WorkflowEnvironment

from baton.db.tables import Task, TaskEvent, TaskMessage, ToolRun, ToolRunStep, utcnow
from baton.services import history_retention
from baton.services.credits import plan_book
from baton.settings import Settings
from tests.support import Tenant, app_with_worker, assert_error, on_plan, with_plans
from tests.test_agent_tasks import FINAL, make_agent, make_tool, start, wait_for
from tests.test_tools import wait_for_run

Sessions = async_sessionmaker[AsyncSession]
PLANS = """
brief:
  history_retention_days: 7
"""


@pytest.fixture
def brief_settings(settings: Settings, tmp_path: Path) -> Settings:
    return with_plans(settings, tmp_path, PLANS)


@pytest.fixture
async def brief_api(
    brief_settings: Settings, temporal_env: WorkflowEnvironment, session_factory: Sessions
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_with_worker(brief_settings, temporal_env.client, session_factory) as client:
        yield client


async def finished_task(api: httpx.AsyncClient, tenant: Tenant, agent: str) -> str:
    task_id = await start(api, tenant, agent, 'call echo_tool {"text": "old"}')
    task = await wait_for(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    return task_id


async def finished_run(api: httpx.AsyncClient, tenant: Tenant, tool: str) -> str:
    started = await api.post(
        tenant.url(f"/tools/{tool}/runs"), json={"params": {"text": "x"}}, headers=tenant.headers
    )
    assert started.status_code == 201, started.text
    run_id: str = started.json()["id"]
    assert (await wait_for_run(api, tenant, run_id))["status"] == "succeeded"
    return run_id


async def backdate(session_factory: Sessions, days: int, *, tasks=(), runs=()) -> None:
    when = utcnow() - timedelta(days=days)
    async with session_factory.begin() as session:
        if tasks:
            await session.execute(
                update(Task).where(Task.id.in_(tasks)).values(created_at=when, updated_at=when)
            )
        if runs:
            await session.execute(
                update(ToolRun).where(ToolRun.id.in_(runs)).values(created_at=when, updated_at=when)
            )


async def count(
    session_factory: Sessions, column: InstrumentedAttribute[str], ids: list[str]
) -> int:
    async with session_factory() as session:
        found = await session.scalar(select(func.count()).where(column.in_(ids)))
    return int(found or 0)


async def test_finished_history_older_than_the_plan_keeps_is_deleted_and_the_rest_kept(
    brief_api: httpx.AsyncClient,
    brief_settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    session_factory: Sessions,
):
    api = brief_api
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    old_task, new_task = [await finished_task(api, tenant, agent) for _ in range(2)]
    old_run, new_run = [await finished_run(api, tenant, tool) for _ in range(2)]
    # Still going on (idle, waiting for a follow-up), however old.
    idler = await make_agent(api, tenant, tools=[], idle_timeout_seconds=600, name="Idler")
    open_task = await start(api, tenant, idler, "hello")
    assert (await wait_for(api, tenant, open_task, {"idle"}))["status"] == "idle"
    # Another organisation's equally old history, on a plan that keeps everything.
    other_tool = await make_tool(api, other_tenant)
    other_run = await finished_run(api, other_tenant, other_tool)
    await on_plan(session_factory, tenant, "brief")
    await backdate(session_factory, 8, tasks=[old_task, open_task], runs=[old_run, other_run])
    await backdate(session_factory, 6, tasks=[new_task], runs=[new_run])
    assert await count(session_factory, TaskEvent.task_id, [old_task]) > 0

    expired = await history_retention.delete_expired(
        session_factory=session_factory, plans=plan_book(brief_settings)
    )

    assert (expired.tasks, expired.tool_runs) >= (1, 1)
    gone = await api.get(tenant.url(f"/tasks/{old_task}"), headers=tenant.headers)
    assert_error(gone, 404)
    assert_error(await api.get(tenant.url(f"/tool-runs/{old_run}"), headers=tenant.headers), 404)
    # Its messages, events and steps went with it.
    assert await count(session_factory, TaskMessage.task_id, [old_task]) == 0
    assert await count(session_factory, TaskEvent.task_id, [old_task]) == 0
    assert await count(session_factory, ToolRunStep.run_id, [old_run]) == 0
    for kept in (new_task, open_task):
        response = await api.get(tenant.url(f"/tasks/{kept}"), headers=tenant.headers)
        assert response.status_code == 200, response.text
    assert (await api.get(tenant.url(f"/tool-runs/{new_run}"), headers=tenant.headers)).is_success
    other = await api.get(other_tenant.url(f"/tool-runs/{other_run}"), headers=other_tenant.headers)
    assert other.status_code == 200, other.text
    listed = (await api.get(tenant.url("/tasks"), headers=tenant.headers)).json()["items"]
    assert old_task not in {task["id"] for task in listed}
