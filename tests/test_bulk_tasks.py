"""Bulk tasks: one task of an agent per row of a knowledge set, at the pace asked, within
working hours; a cancel stops the rest; a row's task starts once, even when its batch runs
again after a crash."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.bulk_tasks import BulkTaskActivities
from baton import activity_names
from baton.db.tables import BulkTaskRow, Task
from baton.domain.bulk_tasks import BulkBatch, RowState, WorkingHours, bulk_task_id
from baton.settings import Settings
from tests.processes import Parts, kill, start_worker
from tests.support import Tenant, app_with_worker, assert_error, body_of
from tests.support.factories import filled_set, make_agent, read_until

PEOPLE = [
    {"name": "Ada", "city": "Paris"},
    {"name": "Bob", "city": "Lyon"},
    {"name": "Cleo", "city": "Paris"},
    {"name": "Dan", "city": "Nice"},
    {"name": "Eve", "city": "Lyon"},
]
TEMPLATE = "Write to {{ row.name }} in {{ row.city }}"


async def echo_agent(api: httpx.AsyncClient, tenant: Tenant) -> str:
    return await make_agent(
        api, tenant, tools=[], name="Writer", model="scripted:echo", idle_timeout_seconds=60
    )


async def people_set(
    api: httpx.AsyncClient, tenant: Tenant, people: list[dict[str, Any]] = PEOPLE
) -> tuple[str, list[int]]:
    columns = [{"name": "name"}, {"name": "city"}]
    created, row_ids = await filled_set(api, tenant, people, name="people", columns=columns)
    set_id: str = created["id"]
    return set_id, row_ids


def bulk_url(tenant: Tenant, agent_id: str, path: str = "") -> str:
    return tenant.url(f"/agents/{agent_id}/bulk-tasks{path}")


async def start_bulk(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, **body: Any
) -> dict[str, Any]:
    response = await api.post(bulk_url(tenant, agent_id), json=body, headers=tenant.headers)
    return body_of(response, 201)


async def people_run(
    api: httpx.AsyncClient,
    tenant: Tenant,
    people: list[dict[str, Any]] = PEOPLE,
    **body: Any,
) -> tuple[str, list[int], dict[str, Any]]:
    """A new echo agent, the ids of a new set's rows of `people`, and a bulk run of the agent
    over that set with TEMPLATE and the rest of `body`."""
    agent = await echo_agent(api, tenant)
    set_id, row_ids = await people_set(api, tenant, people)
    run = await start_bulk(api, tenant, agent, set_id=set_id, message_template=TEMPLATE, **body)
    return agent, row_ids, run


async def wait_for_bulk(
    api: httpx.AsyncClient,
    tenant: Tenant,
    agent_id: str,
    bulk_id: str,
    until: Any,
    timeout: float = 30,
) -> dict[str, Any]:
    url = bulk_url(tenant, agent_id, f"/{bulk_id}")
    return await read_until(api, tenant, url, until, timeout=timeout, what=f"bulk run {bulk_id}")


async def cancelled_run(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, bulk_id: str
) -> dict[str, Any]:
    """Asks for the run's cancel, and returns the run once it says it is cancelled."""
    await api.post(bulk_url(tenant, agent_id, f"/{bulk_id}/cancel"), headers=tenant.headers)
    return await wait_for_bulk(api, tenant, agent_id, bulk_id, lambda r: r["status"] == "cancelled")


async def tasks_of(session_factory: async_sessionmaker[AsyncSession], agent_id: str) -> list[Task]:
    async with session_factory() as session:
        return list((await session.scalars(select(Task).where(Task.agent_id == agent_id))).all())


async def test_every_row_gets_one_task_in_batches_with_its_own_message(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    agent, row_ids, run = await people_run(api, tenant, per_interval=2, interval_seconds=1)
    assert run["total"] == 5

    done = await wait_for_bulk(
        api, tenant, agent, run["id"], lambda r: r["counts"]["processed"] == 5
    )
    assert done["status"] == "completed"
    assert done["counts"] == {
        "upcoming": 0,
        "in_progress": 0,
        "processed": 5,
        "failed": 0,
        "cancelled": 0,
    }
    rows = done["rows"]["items"]
    assert [row["row_id"] for row in rows] == row_ids
    for row, person in zip(rows, PEOPLE, strict=True):
        assert row["task_id"] == bulk_task_id(run["id"], row["row_id"])
        task = (
            await api.get(tenant.url(f"/tasks/{row['task_id']}"), headers=tenant.headers)
        ).json()
        assert task["messages"][0]["content"] == f"Write to {person['name']} in {person['city']}"
    # Two rows a batch, a batch a second: rows 1-2, 3-4, then 5. A durable timer of a
    # second parts two batches, so the gaps between batches are at least that long however
    # busy the machine is; rows start in order, and three batches can only be 1-2, 3-4, 5
    # when the gaps fall after rows 2 and 4.
    history = await temporal_env.client.get_workflow_handle(done["workflow_id"]).fetch_history()
    batches = [
        event
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name
        == activity_names.BULK_START_BATCH
    ]
    assert len(batches) == 3
    started = [datetime.fromisoformat(row["started_at"]) for row in rows]
    assert started == sorted(started)
    assert started[2] - started[1] >= timedelta(seconds=0.9)
    assert started[4] - started[3] >= timedelta(seconds=0.9)

    listed = (await api.get(bulk_url(tenant, agent), headers=tenant.headers)).json()
    assert [item["id"] for item in listed["items"]] == [run["id"]]
    assert listed["next_cursor"] is None


async def test_filters_pick_the_rows_that_get_a_task(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    agent, row_ids, run = await people_run(
        api,
        tenant,
        filters=[{"column": "city", "op": "eq", "value": "Paris"}],
        per_interval=10,
        interval_seconds=1,
    )
    assert run["total"] == 2
    done = await wait_for_bulk(
        api, tenant, agent, run["id"], lambda r: r["counts"]["processed"] == 2
    )
    assert [row["row_id"] for row in done["rows"]["items"]] == [row_ids[0], row_ids[2]]
    messages = sorted(task.id for task in await tasks_of(session_factory, agent))
    assert messages == sorted(row["task_id"] for row in done["rows"]["items"])


async def test_a_cancel_midway_leaves_the_rows_not_started_cancelled(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    agent, _, run = await people_run(api, tenant, per_interval=1, interval_seconds=3)
    await wait_for_bulk(api, tenant, agent, run["id"], lambda r: r["counts"]["upcoming"] < 5)
    cancelled = await api.post(
        bulk_url(tenant, agent, f"/{run['id']}/cancel"), headers=tenant.headers
    )
    assert cancelled.status_code == 202, cancelled.text

    final = await wait_for_bulk(api, tenant, agent, run["id"], lambda r: r["status"] == "cancelled")
    counts = final["counts"]
    started = counts["in_progress"] + counts["processed"]
    assert 1 <= started <= 2
    assert counts["cancelled"] == 5 - started
    assert counts["upcoming"] == 0
    # The run's last activity records the status; the workflow closes right after it.
    handle = temporal_env.client.get_workflow_handle(final["workflow_id"])
    with pytest.raises(WorkflowFailureError) as closed:
        await asyncio.wait_for(handle.result(), timeout=30)
    assert isinstance(closed.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    # The run is closed: no more tasks than the rows it started, and those go on.
    assert len(await tasks_of(session_factory, agent)) == started
    again = await api.post(bulk_url(tenant, agent, f"/{run['id']}/cancel"), headers=tenant.headers)
    assert_error(again, 409)


async def test_bad_templates_unknown_columns_and_other_projects_sets_are_refused(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, worker: Worker
):
    agent = await echo_agent(api, tenant)
    set_id, _ = await people_set(api, tenant)
    other_set, _ = await people_set(api, other_tenant)
    url = bulk_url(tenant, agent)
    for body, field in [
        ({"set_id": set_id, "message_template": "Hi {{ row.name "}, "message_template"),
        ({"set_id": set_id, "message_template": "Hi {{ row.email }}"}, "email"),
        ({"set_id": set_id, "message_template": "Hi {{ params.name }}"}, "params"),
        ({"set_id": other_set, "message_template": TEMPLATE}, "set_id"),
        (
            {
                "set_id": set_id,
                "message_template": TEMPLATE,
                "filters": [{"column": "age", "op": "gt", "value": 3}],
            },
            "age",
        ),
        ({"set_id": set_id, "message_template": TEMPLATE, "per_interval": 0}, "per_interval"),
        (
            {
                "set_id": set_id,
                "message_template": TEMPLATE,
                "working_hours": {"timezone": "Mars/Olympus", "from": "09:00", "to": "17:00"},
            },
            "time zone",
        ),
    ]:
        response = await api.post(url, json=body, headers=tenant.headers)
        error = assert_error(response, 422)
        assert field in response.text, error

    run = await start_bulk(
        api, tenant, agent, set_id=set_id, message_template=TEMPLATE, interval_seconds=1
    )
    # Another project's token sees neither the agent's runs nor this one.
    for path in ("", f"/{run['id']}"):
        assert_error(
            await api.get(bulk_url(other_tenant, agent, path), headers=other_tenant.headers), 404
        )
        assert_error(
            await api.get(
                tenant.url(f"/agents/{agent}/bulk-tasks{path}"), headers=other_tenant.headers
            ),
            404,
        )
    assert_error(
        await api.post(
            tenant.url(f"/agents/{agent}/bulk-tasks/{run['id']}/cancel"),
            headers=other_tenant.headers,
        ),
        404,
    )


async def run_of(temporal_env: WorkflowEnvironment, task: Task) -> str:
    description = await temporal_env.client.get_workflow_handle(task.workflow_id).describe()
    return description.run_id or ""


def closed_hours(now: datetime) -> tuple[dict[str, Any], datetime]:
    """Hours that open two hours from now, every day, in UTC; and when they open."""
    opens = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    closes = opens + timedelta(hours=1)
    hours = {"timezone": "UTC", "from": opens.strftime("%H:%M"), "to": closes.strftime("%H:%M")}
    return hours, opens


class WaitingRun(NamedTuple):
    """A bulk run of PEOPLE waiting for its working hours, and the activities a test runs
    its batches with by hand."""

    agent: str
    row_ids: list[int]
    run: dict[str, Any]
    activities: BulkTaskActivities


@pytest.fixture
async def waiting_run(
    worker: Worker,
    api: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
) -> WaitingRun:
    """The run itself waits for hours that open two hours from now: the test runs its
    batches."""
    hours, _ = closed_hours(datetime.now(UTC))
    agent, row_ids, run = await people_run(api, tenant, working_hours=hours)
    await wait_for_bulk(api, tenant, agent, run["id"], lambda r: r["status"] == "waiting")
    activities = BulkTaskActivities(temporal_env.client, session_factory, settings)
    return WaitingRun(agent, row_ids, run, activities)


async def test_outside_working_hours_nothing_starts_and_the_run_says_until_when(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    hours, opens = closed_hours(datetime.now(UTC))
    agent, _, run = await people_run(
        api, tenant, per_interval=5, interval_seconds=1, working_hours=hours
    )
    waiting = await wait_for_bulk(api, tenant, agent, run["id"], lambda r: r["status"] == "waiting")
    assert datetime.fromisoformat(waiting["waiting_until"]) == opens
    assert waiting["counts"]["upcoming"] == 5
    assert await tasks_of(session_factory, agent) == []

    final = await cancelled_run(api, tenant, agent, run["id"])
    assert final["counts"]["cancelled"] == 5
    assert await tasks_of(session_factory, agent) == []


async def test_a_batch_run_again_after_a_crash_starts_each_rows_task_once(
    api: httpx.AsyncClient,
    tenant: Tenant,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    waiting_run: WaitingRun,
):
    agent, row_ids, run, activities = waiting_run
    batch = BulkBatch(bulk_id=run["id"], limit=5)

    first = await ActivityEnvironment().run(activities.start_batch, batch)
    assert (first.started, first.remaining) == (5, 0)
    runs = {
        task.id: await run_of(temporal_env, task) for task in await tasks_of(session_factory, agent)
    }
    # A crash after the tasks started and before the rows said so: the retried batch finds
    # them claimed and starts them again, under the same ids.
    async with session_factory.begin() as session:
        await session.execute(
            update(BulkTaskRow)
            .where(BulkTaskRow.bulk_id == run["id"])
            .values(state=RowState.starting.value, task_id=None)
        )
    second = await ActivityEnvironment().run(activities.start_batch, batch)
    assert (second.started, second.remaining) == (5, 0)

    tasks = await tasks_of(session_factory, agent)
    assert sorted(task.id for task in tasks) == sorted(bulk_task_id(run["id"], r) for r in row_ids)
    async with session_factory() as session:
        workflows = await session.scalar(
            select(func.count(func.distinct(Task.workflow_id))).where(Task.agent_id == agent)
        )
    assert workflows == 5
    # Each task's workflow is the one the first batch started, not a second run of it.
    assert {task.id: await run_of(temporal_env, task) for task in tasks} == runs
    final = await cancelled_run(api, tenant, agent, run["id"])
    assert final["counts"]["cancelled"] == 0
    assert final["counts"]["in_progress"] + final["counts"]["processed"] == 5


async def test_a_long_run_continues_as_new_and_still_starts_each_row_once(
    eager_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    # A batch costs at least six history events (its activity and a workflow task), a timer
    # two more when the batch was quicker than the interval: 30 batches pass the server's
    # 100-event suggestion however fast or slow the machine is.
    people = [{"name": f"person {i}", "city": "Paris"} for i in range(30)]
    async with app_with_worker(settings, eager_env.client, session_factory) as api:
        agent, row_ids, run = await people_run(
            api, tenant, people, per_interval=1, interval_seconds=0.1
        )
        done = await wait_for_bulk(
            api, tenant, agent, run["id"], lambda r: r["status"] == "completed", timeout=60
        )
    assert done["counts"]["upcoming"] == done["counts"]["failed"] == 0
    history = await eager_env.client.get_workflow_handle(run["workflow_id"]).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id, "the run never continued as new"
    tasks = await tasks_of(session_factory, agent)
    assert sorted(task.id for task in tasks) == sorted(bulk_task_id(run["id"], r) for r in row_ids)


async def test_a_batch_cancelled_midway_gives_back_the_rows_it_had_not_started(
    api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
    waiting_run: WaitingRun,
):
    agent, row_ids, run, activities = waiting_run
    env = ActivityEnvironment()
    batch = asyncio.create_task(
        env.run(activities.start_batch, BulkBatch(bulk_id=run["id"], limit=5))
    )
    async with asyncio.timeout(20):
        while not await tasks_of(session_factory, agent):
            await asyncio.sleep(0.005)
    env.cancel()
    cancelled = False
    try:
        await batch
    except asyncio.CancelledError:
        cancelled = True

    async with session_factory() as session:
        rows = {
            row.row_id: row
            for row in await session.scalars(
                select(BulkTaskRow).where(BulkTaskRow.bulk_id == run["id"])
            )
        }
    tasks = {task.id for task in await tasks_of(session_factory, agent)}
    states = {row.state for row in rows.values()}
    assert RowState.starting.value not in states
    # Each row started has its task, and no row left upcoming has one.
    for row_id in row_ids:
        row, task_id = rows[row_id], bulk_task_id(run["id"], row_id)
        if row.state == RowState.started.value:
            assert row.task_id == task_id and task_id in tasks
        else:
            assert row.state == RowState.upcoming.value and task_id not in tasks
    assert cancelled or states == {RowState.started.value}
    final = await cancelled_run(api, tenant, agent, run["id"])
    assert final["counts"]["cancelled"] == sum(
        1 for row in rows.values() if row.state == RowState.upcoming.value
    )


def test_working_hours_say_when_they_next_open():
    paris = WorkingHours.model_validate(
        {"timezone": "Europe/Paris", "days": [1, 2, 3, 4, 5], "from": "09:00", "to": "17:00"}
    )
    # Wednesday 2026-12-02, 10:00 in Paris (09:00 UTC): open.
    assert paris.next_opening(datetime(2026, 12, 2, 9, 0, tzinfo=UTC)) is None
    # 17:00 in Paris: closed until Thursday 09:00 Paris, 08:00 UTC.
    assert paris.next_opening(datetime(2026, 12, 2, 16, 0, tzinfo=UTC)) == datetime(
        2026, 12, 3, 8, 0, tzinfo=UTC
    )
    # Friday evening: Monday morning.
    assert paris.next_opening(datetime(2026, 12, 4, 18, 0, tzinfo=UTC)) == datetime(
        2026, 12, 7, 8, 0, tzinfo=UTC
    )
    # Summer time: 09:00 in Paris is 07:00 UTC.
    assert paris.next_opening(datetime(2026, 7, 1, 5, 0, tzinfo=UTC)) == datetime(
        2026, 7, 1, 7, 0, tzinfo=UTC
    )
    night = WorkingHours.model_validate({"days": [1], "from": "22:00", "to": "02:00"})
    # Monday's window runs past midnight into Tuesday, and no further.
    assert night.next_opening(datetime(2026, 12, 8, 1, 0, tzinfo=UTC)) is None
    assert night.next_opening(datetime(2026, 12, 8, 3, 0, tzinfo=UTC)) == datetime(
        2026, 12, 14, 22, 0, tzinfo=UTC
    )


@pytest.mark.alone  # kills a worker process on a timer: under xdist, while no other test runs
async def test_a_worker_killed_mid_run_starts_no_row_twice(
    api: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    parts = Parts(
        database_url=settings.resolved_database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=settings.temporal_task_queue,
        data_dir=settings.data_dir,
    )
    people = [{"name": f"person {i}", "city": "Lyon"} for i in range(8)]
    first = start_worker(parts)
    second = None
    try:
        agent, row_ids, run = await people_run(
            api, tenant, people, per_interval=2, interval_seconds=0.5
        )
        await wait_for_bulk(
            api, tenant, agent, run["id"], lambda r: r["counts"]["upcoming"] <= 6, timeout=60
        )
        kill(first)
        second = start_worker(parts)
        # Every row started; their tasks (some lost mid-answer with the worker) go on.
        done = await wait_for_bulk(
            api, tenant, agent, run["id"], lambda r: r["status"] == "completed", timeout=90
        )
    finally:
        kill(first)
        kill(second)
    assert done["counts"]["upcoming"] == done["counts"]["failed"] == 0
    assert [row["task_id"] for row in done["rows"]["items"]] == [
        bulk_task_id(run["id"], r) for r in row_ids
    ]
    assert len(await tasks_of(session_factory, agent)) == 8
