"""Webhooks and schedules start an agent's tasks without anyone calling the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.domain.models import SCRIPTED_LABEL
from baton.domain.tasks import AgentTaskInput
from baton.settings import Settings
from baton.temporal import BATON_AGENT, BATON_KIND, BATON_PROJECT
from tests.support import Tenant, api_client, assert_error, create_token
from tests.support.factories import task_in
from tests.test_first_task import create_agent


async def create_webhook(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, **body: Any
) -> dict[str, Any]:
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/webhooks"), json=body, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def call_hook(api: httpx.AsyncClient, hook: dict[str, Any], **request: Any) -> httpx.Response:
    """The caller is an outside system: it has the URL and nothing else."""
    return await api.post(urlsplit(hook["url"]).path, **request)


async def agent_tasks(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str
) -> list[dict[str, Any]]:
    response = await api.get(tenant.url(f"/tasks?agent_id={agent_id}"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()["items"]
    return tasks


async def create_schedule(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, **body: Any
) -> dict[str, Any]:
    spec = {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "message": "Daily report", **body}
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/schedules"), json=spec, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def schedule_handle(client: Client, schedule: dict[str, Any]) -> ScheduleHandle:
    return client.get_schedule_handle(schedule["temporal_schedule_id"])


async def workflows_of_schedule(client: Client, schedule_id: str) -> list[str]:
    """Waits for the runs a schedule started to show in Temporal's (eventually consistent)
    visibility."""
    query = f'WorkflowId STARTS_WITH "task-schedule-{schedule_id}"'
    async with asyncio.timeout(20):
        while True:
            found = [w.id async for w in client.list_workflows(query)]
            if found:
                return found
            await asyncio.sleep(0.2)


async def assert_hidden_from(
    api: httpx.AsyncClient,
    other: Tenant,
    tenant: Tenant,
    owner: str,
    hook: dict[str, Any],
    schedule: dict[str, Any],
) -> None:
    """`other`'s token reaches none of the triggers of `owner` (`/agents/<id>` or
    `/workforces/<id>` in `tenant`'s project), through either project's URL: 404 each."""
    hooks_path, schedules_path = f"{owner}/webhooks", f"{owner}/schedules"
    for method, path, body in (
        ("GET", hooks_path, None),
        ("POST", hooks_path, {"message_template": "x"}),
        ("DELETE", f"{hooks_path}/{hook['id']}", None),
        ("GET", schedules_path, None),
        ("POST", schedules_path, {"cron": "@daily", "message": "x"}),
        ("POST", f"{schedules_path}/{schedule['id']}/pause", None),
        ("POST", f"{schedules_path}/{schedule['id']}/resume", None),
        ("DELETE", f"{schedules_path}/{schedule['id']}", None),
    ):
        for url in (tenant.url(path), other.url(path)):
            response = await api.request(method, url, json=body, headers=other.headers)
            assert_error(response, 404)


async def assert_not_under(
    api: httpx.AsyncClient,
    tenant: Tenant,
    owner: str,
    hook: dict[str, Any],
    schedule: dict[str, Any],
) -> None:
    """Under another owner of the same project, the trigger ids are unknown: 404 each."""
    for method, path in (
        ("DELETE", f"{owner}/webhooks/{hook['id']}"),
        ("POST", f"{owner}/schedules/{schedule['id']}/pause"),
        ("DELETE", f"{owner}/schedules/{schedule['id']}"),
    ):
        assert_error(await api.request(method, tenant.url(path), headers=tenant.headers), 404)


# Webhooks


async def test_a_webhook_turns_a_json_payload_into_a_task(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, settings: Settings
):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(
        api, tenant, agent["id"], message_template="New ticket: {{ payload.title }}"
    )
    assert hook["token"].startswith("bthk_")
    assert hook["url"] == f"{settings.public_api_url}/api/hooks/{hook['token']}"
    assert hook["dedupe_key_template"] is None

    listed = await api.get(tenant.url(f"/agents/{agent['id']}/webhooks"), headers=tenant.headers)
    assert [(w["id"], w["message_template"]) for w in listed.json()["items"]] == [
        (hook["id"], "New ticket: {{ payload.title }}")
    ]
    assert "token" not in listed.json()["items"][0] and "url" not in listed.json()["items"][0]

    answer = await call_hook(api, hook, json={"title": "Printer on fire", "id": 7})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["workflow_id"] == f"task-{accepted['task_id']}"
    assert accepted["status"] == "queued" and accepted["deduplicated"] is False

    task = await task_in(api, tenant, accepted["task_id"])
    assert task["status"] == "completed"
    assert task["messages"][0] == {"role": "user", "content": "New ticket: Printer on fire"}
    assert task["messages"][-1]["content"] == (
        f"{SCRIPTED_LABEL} You said: New ticket: Printer on fire"
    )


async def test_the_same_dedupe_key_twice_starts_one_task(api: httpx.AsyncClient, tenant: Tenant):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(
        api,
        tenant,
        agent["id"],
        message_template="Ticket {{ payload.id }} changed",
        dedupe_key_template="{{ payload.id }}",
    )

    first = (await call_hook(api, hook, json={"id": 42})).json()
    again = await call_hook(api, hook, json={"id": 42, "delivery": "retry"})
    assert again.status_code == 202, again.text
    assert first["deduplicated"] is False
    assert again.json()["deduplicated"] is True
    assert again.json()["task_id"] == first["task_id"]
    assert [t["id"] for t in await agent_tasks(api, tenant, agent["id"])] == [first["task_id"]]

    other = (await call_hook(api, hook, json={"id": 43})).json()
    assert other["deduplicated"] is False and other["task_id"] != first["task_id"]
    assert len(await agent_tasks(api, tenant, agent["id"])) == 2


async def test_a_deduplicated_call_answers_with_the_tasks_real_status(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(
        api, tenant, agent["id"], message_template="Ticket", dedupe_key_template="{{ payload.id }}"
    )
    first = (await call_hook(api, hook, json={"id": 1})).json()
    assert (await task_in(api, tenant, first["task_id"]))["status"] == "completed"
    again = (await call_hook(api, hook, json={"id": 1})).json()
    assert (again["deduplicated"], again["status"]) == (True, "completed")


async def test_without_a_dedupe_key_every_call_starts_a_task_from_any_json(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(api, tenant, agent["id"], message_template="Got {{ payload }}")

    started = []
    for body in ([1, 2], [1, 2], "a plain string"):
        answer = await call_hook(api, hook, json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["deduplicated"] is False
        started.append(answer.json()["task_id"])
    assert len(set(started)) == 3
    assert len(await agent_tasks(api, tenant, agent["id"])) == 3

    first = await api.get(tenant.url(f"/tasks/{started[0]}"), headers=tenant.headers)
    assert first.json()["messages"][0]["content"] == "Got [1, 2]"
    last = await api.get(tenant.url(f"/tasks/{started[2]}"), headers=tenant.headers)
    assert last.json()["messages"][0]["content"] == "Got a plain string"


async def test_a_revoked_webhook_url_stops_working_at_once(api: httpx.AsyncClient, tenant: Tenant):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(api, tenant, agent["id"], message_template="{{ payload.x }}")
    assert (await call_hook(api, hook, json={"x": "first"})).status_code == 202

    revoked = await api.delete(
        tenant.url(f"/agents/{agent['id']}/webhooks/{hook['id']}"), headers=tenant.headers
    )
    assert revoked.status_code == 204
    assert_error(await call_hook(api, hook, json={"x": "second"}), 404, "not_found")
    assert_error(await api.post("/api/hooks/bthk_never-issued", json={}), 404, "not_found")
    listed = await api.get(tenant.url(f"/agents/{agent['id']}/webhooks"), headers=tenant.headers)
    assert listed.json()["items"] == []
    again = await api.delete(
        tenant.url(f"/agents/{agent['id']}/webhooks/{hook['id']}"), headers=tenant.headers
    )
    assert_error(again, 404, "not_found")
    assert len(await agent_tasks(api, tenant, agent["id"])) == 1


async def test_a_template_that_does_not_parse_or_reads_more_than_payload_is_refused(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await create_agent(api, tenant)
    for body, field in (
        ({"message_template": "Hello {{ payload.name "}, "message_template"),
        ({"message_template": "{{ params.name }}"}, "message_template"),
        ({"message_template": ""}, "message_template"),
        ({"message_template": "ok", "dedupe_key_template": "{% if %}"}, "dedupe_key_template"),
        (
            {"message_template": "ok", "dedupe_key_template": "{{ secrets.k }}"},
            "dedupe_key_template",
        ),
    ):
        response = await api.post(
            tenant.url(f"/agents/{agent['id']}/webhooks"), json=body, headers=tenant.headers
        )
        details = assert_error(response, 422, "invalid_input")["error"]["details"]
        assert details[0]["loc"] == ["body", field], (body, details)


async def test_a_hook_body_must_be_json_of_at_most_a_megabyte_that_the_templates_can_render(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(
        api,
        tenant,
        agent["id"],
        message_template="{{ payload.title }}",
        dedupe_key_template="{{ payload.id }}",
    )
    for content in (b"title=x", b"", b'{"title": NaN, "id": 1}'):
        body = assert_error(await call_hook(api, hook, content=content), 422, "invalid_input")
        assert "not JSON" in body["error"]["message"]
    too_big = b'{"title": "' + b"x" * (1024 * 1024) + b'", "id": 1}'
    assert_error(await call_hook(api, hook, content=too_big), 413, "payload_too_large")

    async def streamed() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for _ in range(20):
            yield b" " * 64 * 1024

    assert_error(await call_hook(api, hook, content=streamed()), 413, "payload_too_large")

    missing = assert_error(await call_hook(api, hook, json={"id": 1}), 422, "invalid_input")
    assert "message_template" in missing["error"]["message"]
    no_key = assert_error(await call_hook(api, hook, json={"title": "x"}), 422, "invalid_input")
    assert "dedupe_key_template" in no_key["error"]["message"]
    blank = assert_error(await call_hook(api, hook, json={"title": " ", "id": 1}), 422)
    assert "empty message" in blank["error"]["message"]
    assert await agent_tasks(api, tenant, agent["id"]) == []


async def test_another_tenant_and_a_viewer_cannot_touch_the_triggers(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    agent = await create_agent(api, tenant)
    hook = await create_webhook(api, tenant, agent["id"], message_template="{{ payload }}")
    schedule = await create_schedule(api, tenant, agent["id"])
    hooks_path = f"/agents/{agent['id']}/webhooks"
    schedules_path = f"/agents/{agent['id']}/schedules"
    await assert_hidden_from(api, other_tenant, tenant, f"/agents/{agent['id']}", hook, schedule)

    # Ids of one agent's triggers mean nothing under another agent of the same project.
    second = await create_agent(api, tenant, name="Second")
    await assert_not_under(api, tenant, f"/agents/{second['id']}", hook, schedule)

    viewer = await create_token(api, tenant.headers, role="viewer", project_id=tenant.project_id)
    viewer_headers = {"Authorization": f"Token {viewer['token']}"}
    listed = await api.get(tenant.url(schedules_path), headers=viewer_headers)
    assert [s["id"] for s in listed.json()["items"]] == [schedule["id"]]
    forbidden = await api.post(
        tenant.url(hooks_path), json={"message_template": "x"}, headers=viewer_headers
    )
    assert_error(forbidden, 403, "permission_denied")
    assert_error(
        await api.post(
            tenant.url(f"{schedules_path}/{schedule['id']}/pause"), headers=viewer_headers
        ),
        403,
    )
    await api.delete(tenant.url(f"{schedules_path}/{schedule['id']}"), headers=tenant.headers)


# Schedules


async def test_a_schedule_is_a_temporal_schedule_that_pauses_resumes_and_goes(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment, settings: Settings
):
    agent = await create_agent(api, tenant)
    created = await create_schedule(api, tenant, agent["id"])
    schedule_id = created["id"]
    assert created["temporal_schedule_id"] == f"baton-schedule-{schedule_id}"
    assert created["cron"] == "0 9 * * 1-5" and created["timezone"] == "Europe/Paris"
    assert created["paused"] is False
    assert created["temporal_ui_url"] == (
        f"http://localhost:8233/namespaces/default/schedules/baton-schedule-{schedule_id}"
    )

    handle = schedule_handle(temporal_env.client, created)
    described = await handle.describe()
    spec = described.schedule.spec
    assert spec.time_zone_name == "Europe/Paris"
    # Temporal keeps a cron string as the calendar it stands for.
    [calendar] = spec.calendars
    assert [(r.start, r.end) for r in calendar.minute] == [(0, 0)]
    assert [(r.start, r.end) for r in calendar.hour] == [(9, 9)]
    assert [(r.start, r.end) for r in calendar.day_of_week] == [(1, 5)]
    assert (
        described.info.next_action_times[0].isoformat().replace("+00:00", "Z")
        == (created["next_run_at"])
    )
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "AgentTaskWorkflow"
    assert action.id == f"task-schedule-{schedule_id}"
    assert action.task_queue == settings.temporal_task_queue
    assert action.typed_search_attributes.get(BATON_PROJECT) == tenant.project_id
    assert action.typed_search_attributes.get(BATON_AGENT) == agent["id"]
    assert action.typed_search_attributes.get(BATON_KIND) == "agent-task"
    [start] = await temporal_env.client.data_converter.decode(list(action.args), [AgentTaskInput])
    assert start == AgentTaskInput(
        task_id="", project_id=tenant.project_id, agent_id=agent["id"], message="Daily report"
    )
    assert described.schedule.state.paused is False

    base = tenant.url(f"/agents/{agent['id']}/schedules")
    paused = await api.post(f"{base}/{schedule_id}/pause", headers=tenant.headers)
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["next_run_at"] is None
    assert (await handle.describe()).schedule.state.paused is True
    listed = (await api.get(base, headers=tenant.headers)).json()["items"]
    assert [(s["id"], s["paused"]) for s in listed] == [(schedule_id, True)]

    resumed = await api.post(f"{base}/{schedule_id}/resume", headers=tenant.headers)
    assert resumed.json()["paused"] is False and resumed.json()["next_run_at"] is not None
    assert (await handle.describe()).schedule.state.paused is False

    deleted = await api.delete(f"{base}/{schedule_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    with pytest.raises(RPCError) as gone:
        await handle.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    assert (await api.get(base, headers=tenant.headers)).json()["items"] == []
    assert_error(await api.post(f"{base}/{schedule_id}/pause", headers=tenant.headers), 404)


async def test_a_bad_cron_or_time_zone_is_refused_and_leaves_nothing(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await create_agent(api, tenant)
    base = tenant.url(f"/agents/{agent['id']}/schedules")
    for body, field in (
        ({"cron": "every morning"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "CRON_TZ=Asia/Tokyo 0 9 * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "0 9 * * *", "message": ""}, "message"),
    ):
        response = await api.post(
            base, json={"message": "Daily report", **body}, headers=tenant.headers
        )
        details = assert_error(response, 422, "invalid_input")["error"]["details"]
        assert details[0]["loc"] == ["body", field], (body, details)
    assert (await api.get(base, headers=tenant.headers)).json()["items"] == []


async def test_triggering_a_schedule_starts_an_agent_task_workflow(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment
):
    agent = await create_agent(api, tenant)
    created = await create_schedule(api, tenant, agent["id"], cron="@daily")
    await schedule_handle(temporal_env.client, created).trigger()

    [workflow_id] = await workflows_of_schedule(temporal_env.client, created["id"])
    run = await temporal_env.client.get_workflow_handle(workflow_id).describe()
    assert run.workflow_type == "AgentTaskWorkflow"
    assert run.typed_search_attributes.get(BATON_PROJECT) == tenant.project_id
    assert run.typed_search_attributes.get(BATON_AGENT) == agent["id"]
    await api.delete(
        tenant.url(f"/agents/{agent['id']}/schedules/{created['id']}"), headers=tenant.headers
    )


async def test_a_scheduled_run_completes_a_task_with_the_schedules_message(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment, worker: Worker
):
    agent = await create_agent(api, tenant)
    created = await create_schedule(api, tenant, agent["id"], cron="@daily")
    await schedule_handle(temporal_env.client, created).trigger()

    async with asyncio.timeout(30):
        while not (tasks := await agent_tasks(api, tenant, agent["id"])):
            await asyncio.sleep(0.2)
    [task] = tasks
    assert task["workflow_id"].startswith(f"task-schedule-{created['id']}")
    done = await task_in(api, tenant, task["id"])
    assert done["status"] == "completed", done
    assert done["messages"][0] == {"role": "user", "content": "Daily report"}
    assert done["messages"][-1]["content"] == f"{SCRIPTED_LABEL} You said: Daily report"
    await api.delete(
        tenant.url(f"/agents/{agent['id']}/schedules/{created['id']}"), headers=tenant.headers
    )


async def test_temporal_unreachable_answers_503_and_changes_nothing(
    api: httpx.AsyncClient, settings: Settings, tenant: Tenant, temporal_env: WorkflowEnvironment
):
    agent = await create_agent(api, tenant)
    existing = await create_schedule(api, tenant, agent["id"])
    base = tenant.url(f"/agents/{agent['id']}/schedules")
    unreachable = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter
    )
    async with api_client(settings, unreachable) as down:
        created = await down.post(
            base, json={"cron": "@daily", "message": "x"}, headers=tenant.headers
        )
        assert_error(created, 503, "service_unavailable")
        paused = await down.post(f"{base}/{existing['id']}/pause", headers=tenant.headers)
        assert_error(paused, 503, "service_unavailable")
        deleted = await down.delete(f"{base}/{existing['id']}", headers=tenant.headers)
        assert_error(deleted, 503, "service_unavailable")
        listed = await down.get(base, headers=tenant.headers)
        assert [(s["id"], s["paused"], s["next_run_at"]) for s in listed.json()["items"]] == [
            (existing["id"], False, None)
        ]
    assert (
        await schedule_handle(temporal_env.client, existing).describe()
    ).schedule.state.paused is False
    await api.delete(f"{base}/{existing['id']}", headers=tenant.headers)


async def test_a_schedule_fires_by_itself_on_its_interval(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment, worker: Worker
):
    """No trigger: the Temporal Schedule starts the run when its time comes. (The
    time-skipping test server has no Schedules, so this runs on the dev server's clock.)"""
    agent = await create_agent(api, tenant)
    created = await create_schedule(api, tenant, agent["id"], cron="@every 2s")
    try:
        async with asyncio.timeout(30):
            while not (tasks := await agent_tasks(api, tenant, agent["id"])):
                await asyncio.sleep(0.2)
        assert tasks[0]["workflow_id"].startswith(f"task-schedule-{created['id']}")
        done = await task_in(api, tenant, tasks[0]["id"])
        assert done["status"] == "completed", done
        assert done["messages"][0] == {"role": "user", "content": "Daily report"}
    finally:
        await api.delete(
            tenant.url(f"/agents/{agent['id']}/schedules/{created['id']}"), headers=tenant.headers
        )
