"""A run that Temporal ends without its workflow's say (terminated from the UI or the CLI)
ends with a final status in Baton too: when it is read, and by the worker's sweep."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import tool_runs as run_repo
from baton.db.tables import Task, ToolRun
from baton.services import closed_runs
from tests.support import Tenant
from tests.support.factories import make_agent, make_tool, start_task, task_in

SLOW_TOOL = {
    "name": "Slow",
    "steps": [{"name": "wait", "type": "delay", "seconds": 600}],
}


async def slow_run(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    tool = await api.post(tenant.url("/tools"), json=SLOW_TOOL, headers=tenant.headers)
    assert tool.status_code == 201, tool.text
    started = await api.post(
        tenant.url(f"/tools/{tool.json()['id']}/runs"), json={}, headers=tenant.headers
    )
    assert started.status_code == 201, started.text
    run: dict[str, Any] = started.json()
    async with asyncio.timeout(30):
        while run["status"] != "running":
            await asyncio.sleep(0.1)
            run = (
                await api.get(tenant.url(f"/tool-runs/{run['id']}"), headers=tenant.headers)
            ).json()
    return run


async def quiet_for_a_while(
    session_factory: async_sessionmaker[AsyncSession],
    table: type[Task] | type[ToolRun],
    row_id: str,
) -> None:
    """The row last changed a minute ago, as a run left alone does (a row written in the
    last few seconds is its workflow's to settle, and reading it asks Temporal nothing)."""
    async with session_factory.begin() as session:
        await session.execute(
            update(table)
            .where(table.id == row_id)
            .values(updated_at=datetime.now(UTC) - closed_runs.QUIET_FOR - timedelta(minutes=1))
        )


async def test_a_tool_run_terminated_in_temporal_reads_cancelled(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    run = await slow_run(api, tenant)
    await temporal_env.client.get_workflow_handle(run["workflow_id"]).terminate("stuck")
    just_now = (await api.get(tenant.url(f"/tool-runs/{run['id']}"), headers=tenant.headers)).json()
    assert just_now["status"] == "running"  # changed a moment ago: not asked of Temporal yet
    await quiet_for_a_while(session_factory, ToolRun, run["id"])

    after = (await api.get(tenant.url(f"/tool-runs/{run['id']}"), headers=tenant.headers)).json()
    assert after["status"] == "cancelled"
    assert after["error"] == "the run was terminated in Temporal"
    listed = (await api.get(tenant.url("/tool-runs"), headers=tenant.headers)).json()
    assert [r["status"] for r in listed["items"] if r["id"] == run["id"]] == ["cancelled"]


async def test_a_task_terminated_in_temporal_reads_cancelled_and_its_stream_ends(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "x"}')
    task = await task_in(api, tenant, task_id, {"waiting-approval"})
    await temporal_env.client.get_workflow_handle(task["workflow_id"]).terminate("stuck")
    await quiet_for_a_while(session_factory, Task, task_id)

    after = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
    assert (after["status"], after["error"]) == ("cancelled", "the run was terminated in Temporal")
    async with api.stream(
        "GET", tenant.url(f"/tasks/{task_id}/events"), headers=tenant.headers
    ) as stream:
        text = "".join([chunk async for chunk in stream.aiter_text()])
    assert '"status": "cancelled"' in text or '"status":"cancelled"' in text


async def test_the_sweep_settles_terminated_runs_nobody_read(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    run = await slow_run(api, tenant)
    since = datetime.now(UTC) - timedelta(minutes=1)
    await temporal_env.client.get_workflow_handle(run["workflow_id"]).terminate("stuck")

    # Temporal's visibility lists a closed run a moment after it closed.
    async with asyncio.timeout(30):
        while not await closed_runs.settle_closed_since(
            client=temporal_env.client, session_factory=session_factory, since=since
        ):
            await asyncio.sleep(0.2)
    async with session_factory() as session:
        stored = await run_repo.get_run(
            session=session, project_id=tenant.project_id, run_id=run["id"]
        )
    assert stored.status == "cancelled"
    # Settled once: a second sweep finds the row final and writes nothing.
    assert not await closed_runs.settle_closed_since(
        client=temporal_env.client, session_factory=session_factory, since=since
    )
