"""Webhooks and schedules start a workforce's tasks as they start an agent's: through the API,
the real Temporal server (its Schedules included) and a real worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.tables import AgentSchedule, AgentWebhook
from baton.domain.workforce_tasks import WorkforceTaskInput
from baton.temporal import BATON_KIND, BATON_PROJECT, BATON_WORKFORCE
from tests.support import Tenant, assert_error
from tests.support.factories import task_in
from tests.test_triggers import (
    assert_hidden_from,
    assert_not_under,
    call_hook,
    schedule_handle,
)
from tests.test_workforce_tasks import FINAL, echo_agent, echo_workforce, make_workforce, said


async def two_agent_workforce(api: httpx.AsyncClient, tenant: Tenant) -> str:
    """Triage hands over to reply; both echo."""
    workforce, _ = await echo_workforce(api, tenant, "triage", "reply")
    return workforce


async def create_trigger(
    api: httpx.AsyncClient, tenant: Tenant, workforce_id: str, kind: str, **body: Any
) -> dict[str, Any]:
    response = await api.post(
        tenant.url(f"/workforces/{workforce_id}/{kind}"), json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def workforce_tasks(
    api: httpx.AsyncClient, tenant: Tenant, workforce_id: str
) -> list[dict[str, Any]]:
    """The workforce's own tasks (its node runs are tasks too, of kind agent-task)."""
    response = await api.get(
        tenant.url(f"/tasks?workforce_id={workforce_id}"), headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return [t for t in response.json()["items"] if t["kind"] == "workforce-task"]


def reply_to(message: str) -> str:
    """What the triage -> reply chain answers to `message`."""
    return said(f"{message}\n\nHanded over by triage:\n{said(message)}")


async def test_a_webhook_of_a_workforce_starts_a_workforce_task_that_completes(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    workforce = await two_agent_workforce(api, tenant)
    hook = await create_trigger(
        api,
        tenant,
        workforce,
        "webhooks",
        message_template="Ticket: {{ payload.title }}",
        dedupe_key_template="{{ payload.id }}",
    )
    assert (hook["workforce_id"], hook["agent_id"]) == (workforce, None)
    assert hook["token"].startswith("bthk_")
    listed = await api.get(tenant.url(f"/workforces/{workforce}/webhooks"), headers=tenant.headers)
    assert [w["id"] for w in listed.json()["items"]] == [hook["id"]]

    answer = await call_hook(api, hook, json={"title": "Printer on fire", "id": 7})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["workflow_id"] == f"workforce-task-{accepted['task_id']}"
    assert accepted["deduplicated"] is False

    task = await task_in(api, tenant, accepted["task_id"], FINAL)
    assert task["status"] == "completed", task["error"]
    assert (task["kind"], task["workforce_id"]) == ("workforce-task", workforce)
    assert task["messages"][0]["content"] == "Ticket: Printer on fire"
    assert task["messages"][-1]["content"] == reply_to("Ticket: Printer on fire")

    again = (await call_hook(api, hook, json={"title": "Printer on fire", "id": 7})).json()
    assert (again["task_id"], again["deduplicated"]) == (accepted["task_id"], True)
    assert [t["id"] for t in await workforce_tasks(api, tenant, workforce)] == [task["id"]]

    revoked = await api.delete(
        tenant.url(f"/workforces/{workforce}/webhooks/{hook['id']}"), headers=tenant.headers
    )
    assert revoked.status_code == 204
    assert_error(await call_hook(api, hook, json={"title": "x", "id": 8}), 404, "not_found")


async def test_a_triggered_schedule_of_a_workforce_runs_a_task_that_makes_its_own_row(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment, worker: Worker
):
    workforce = await two_agent_workforce(api, tenant)
    created = await create_trigger(
        api, tenant, workforce, "schedules", cron="@daily", message="Daily report"
    )
    assert (created["workforce_id"], created["agent_id"]) == (workforce, None)
    handle = schedule_handle(temporal_env.client, created)
    described = await handle.describe()
    assert described.search_attributes.get(BATON_WORKFORCE.name) == [workforce]
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "WorkforceWorkflow"
    assert action.id == f"workforce-task-schedule-{created['id']}"
    assert action.typed_search_attributes.get(BATON_WORKFORCE) == workforce
    assert action.typed_search_attributes.get(BATON_PROJECT) == tenant.project_id
    assert action.typed_search_attributes.get(BATON_KIND) == "workforce-task"
    [start] = await temporal_env.client.data_converter.decode(
        list(action.args), [WorkforceTaskInput]
    )
    # No task and no definition: the run makes the one and loads the other as it fires.
    assert (start.task_id, start.workforce) == ("", None)

    await handle.trigger()
    async with asyncio.timeout(30):
        while not (tasks := await workforce_tasks(api, tenant, workforce)):
            await asyncio.sleep(0.2)
    [listed] = tasks
    assert listed["workflow_id"].startswith(f"workforce-task-schedule-{created['id']}")
    task = await task_in(api, tenant, listed["id"], FINAL)
    assert task["status"] == "completed", task["error"]
    assert task["workforce_version"] == 1
    assert task["messages"][0]["content"] == "Daily report"
    assert task["messages"][-1]["content"] == reply_to("Daily report")
    assert [(n["node"], n["status"]) for n in task["nodes"]] == [
        ("triage", "completed"),
        ("reply", "completed"),
    ]
    run = await temporal_env.client.get_workflow_handle(listed["workflow_id"]).describe()
    assert run.typed_search_attributes.get(BATON_WORKFORCE) == workforce

    base = tenant.url(f"/workforces/{workforce}/schedules")
    paused = await api.post(f"{base}/{created['id']}/pause", headers=tenant.headers)
    assert paused.json()["paused"] is True
    assert (await handle.describe()).schedule.state.paused is True
    resumed = await api.post(f"{base}/{created['id']}/resume", headers=tenant.headers)
    assert resumed.json()["paused"] is False
    assert [s["id"] for s in (await api.get(base, headers=tenant.headers)).json()["items"]] == [
        created["id"]
    ]
    assert (await api.delete(f"{base}/{created['id']}", headers=tenant.headers)).status_code == 204
    with pytest.raises(RPCError) as gone:
        await handle.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND


async def test_a_schedules_params_are_checked_against_the_workforces_agent_nodes(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await echo_agent(
        api, tenant, "Typed", params=[{"name": "limit", "type": "integer", "required": True}]
    )
    workforce = await make_workforce(
        api, tenant, nodes=[{"id": "typed", "type": "agent", "agent_id": agent}], entry="typed"
    )
    base = tenant.url(f"/workforces/{workforce}/schedules")
    refused = await api.post(
        base,
        json={"cron": "@daily", "message": "x", "params": {"limit": "many"}},
        headers=tenant.headers,
    )
    body = assert_error(refused, 422, "invalid_input")
    assert "typed" in body["error"]["message"] and "limit" in body["error"]["message"]
    assert (await api.get(base, headers=tenant.headers)).json()["items"] == []


async def test_deleting_a_workforce_takes_its_webhooks_and_schedules_with_it(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment
):
    workforce = await two_agent_workforce(api, tenant)
    hook = await create_trigger(api, tenant, workforce, "webhooks", message_template="x")
    schedule = await create_trigger(api, tenant, workforce, "schedules", cron="@daily", message="x")
    deleted = await api.delete(tenant.url(f"/workforces/{workforce}"), headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text
    with pytest.raises(RPCError) as gone:
        await schedule_handle(temporal_env.client, schedule).describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    assert_error(await call_hook(api, hook, json={}), 404, "not_found")


async def test_another_tenant_and_another_owner_cannot_reach_a_workforces_triggers(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    workforce = await two_agent_workforce(api, tenant)
    hook = await create_trigger(api, tenant, workforce, "webhooks", message_template="x")
    schedule = await create_trigger(api, tenant, workforce, "schedules", cron="@daily", message="x")
    owner = f"/workforces/{workforce}"
    await assert_hidden_from(api, other_tenant, tenant, owner, hook, schedule)

    # A workforce's trigger ids mean nothing under another workforce or an agent.
    other, agent = await two_agent_workforce(api, tenant), await echo_agent(api, tenant, "Loner")
    for elsewhere in (f"/workforces/{other}", f"/agents/{agent}"):
        await assert_not_under(api, tenant, elsewhere, hook, schedule)
    await api.delete(tenant.url(f"{owner}/schedules/{schedule['id']}"), headers=tenant.headers)


async def test_the_database_refuses_a_trigger_of_both_an_agent_and_a_workforce_or_of_neither(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    """The migrated schema holds the rule, whatever code writes the row."""
    workforce = await two_agent_workforce(api, tenant)
    agent = await echo_agent(api, tenant, "Both")
    for agent_id, workforce_id in ((agent, workforce), (None, None)):
        for row in (
            AgentWebhook(token_hash=f"{agent_id}-hash", message_template="x"),
            AgentSchedule(cron="@daily", message="x"),
        ):
            row.project_id, row.agent_id, row.workforce_id = (
                tenant.project_id,
                agent_id,
                workforce_id,
            )
            async with session_factory() as session:
                session.add(row)
                with pytest.raises(IntegrityError):
                    await session.commit()
