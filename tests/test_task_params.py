"""An agent's typed task params: a task starts with values checked against them (defaults
applied), its system prompt and welcome message read them as `{{ params.<name> }}`, and the
task shows what it started with."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.support import Tenant, assert_error
from tests.support.factories import task_in

PARAMS = [
    {"name": "city", "type": "text"},
    {"name": "days", "type": "integer", "default": 3},
    {"name": "units", "type": "enum", "options": ["metric", "imperial"], "required": False},
]


@pytest.fixture
def settings(settings: Settings, openai_server: FakeOpenAI) -> Settings:
    """The local OpenAI server allowed as a self-hosted provider, by its host and port."""
    return settings.model_copy(update={"http_allow_hosts": [f"127.0.0.1:{openai_server.port}"]})


async def make_agent(api: httpx.AsyncClient, tenant: Tenant, **spec: Any) -> httpx.Response:
    body = {"name": "Forecaster", "model": "scripted:echo", "params": PARAMS, **spec}
    return await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)


async def start(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, params: dict[str, Any]
) -> httpx.Response:
    return await api.post(
        tenant.url(f"/agents/{agent_id}/tasks"),
        json={"message": "What is the weather?", "params": params},
        headers=tenant.headers,
    )


async def test_the_system_prompt_and_welcome_message_read_the_tasks_params(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, openai_server: FakeOpenAI
):
    openai_server.reset()
    openai_server.reply_text("Sunny.")
    integration = await api.post(
        tenant.url("/integrations"),
        json={"name": "gpt", "kind": "openai", "base_url": openai_server.base_url},
        headers=tenant.headers,
    )
    assert integration.status_code == 201, integration.text
    created = await make_agent(
        api,
        tenant,
        model="openai:gpt-test",
        system_prompt="Forecast {{ params.days }} days for {{ params.city }}.",
        welcome_message="Hello! Asking about {{ params.city }}?",
    )
    assert created.status_code == 201, created.text

    started = await start(api, tenant, created.json()["id"], {"city": "Lyon"})
    assert started.status_code == 201, started.text
    task = await task_in(api, tenant, started.json()["id"])

    assert task["status"] == "completed", task["error"]
    assert task["params"] == {"city": "Lyon", "days": 3, "units": None}
    assert task["welcome_message"] == "Hello! Asking about Lyon?"
    system = openai_server.requests[0].body["messages"][0]
    assert system == {"role": "system", "content": "Forecast 3 days for Lyon."}


async def test_bad_params_are_refused_naming_the_param(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent_id = (await make_agent(api, tenant)).json()["id"]
    for params, field in (
        ({}, "params.city"),
        ({"city": "Lyon", "days": "three"}, "params.days"),
        ({"city": "Lyon", "units": "kelvin"}, "params.units"),
        ({"city": "Lyon", "colour": "red"}, "params.colour"),
    ):
        body = assert_error(await start(api, tenant, agent_id, params), 422, "invalid_input")
        assert body["error"]["details"][0]["field"] == field
    # Refused before anything started.
    tasks = await api.get(tenant.url("/tasks"), headers=tenant.headers)
    assert tasks.json() == {"items": [], "next_cursor": None}


async def test_an_agent_whose_texts_read_undeclared_params_is_refused(
    api: httpx.AsyncClient, tenant: Tenant
):
    response = await make_agent(api, tenant, system_prompt="About {{ params.country }}.")
    body = assert_error(response, 422, "invalid_input")
    assert body["error"]["details"][0]["field"] == "system_prompt"
    response = await make_agent(api, tenant, welcome_message="Hi {{ params.city ")
    body = assert_error(response, 422, "invalid_input")
    assert body["error"]["details"][0]["field"] == "welcome_message"
    bad_param = await make_agent(api, tenant, params=[{"name": "x", "type": "enum"}])
    assert_error(bad_param, 422)


async def test_a_prompt_that_reads_no_params_is_kept_as_written(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    created = await make_agent(
        api, tenant, params=[], welcome_message="Braces {{ like these }} stay."
    )
    assert created.status_code == 201, created.text
    started = await start(api, tenant, created.json()["id"], {})
    task = await task_in(api, tenant, started.json()["id"])
    assert task["status"] == "completed", task["error"]
    assert (task["params"], task["welcome_message"]) == ({}, "Braces {{ like these }} stay.")


async def test_another_tenant_cannot_start_a_task_with_params(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    agent_id = (await make_agent(api, tenant)).json()["id"]
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/tasks"),
        json={"message": "hi", "params": {"city": "Lyon"}},
        headers=other_tenant.headers,
    )
    assert_error(response, 404, "not_found")


# Triggers


async def test_a_webhook_fills_params_from_its_payload_keeping_their_types(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent_id = (
        await make_agent(api, tenant, welcome_message="{{ params.days }} days in {{ params.city }}")
    ).json()["id"]
    hook = await api.post(
        tenant.url(f"/agents/{agent_id}/webhooks"),
        json={
            "message_template": "Forecast please",
            "params_template": {"city": "{{ payload.place.name }}", "days": "{{ payload.n }}"},
        },
        headers=tenant.headers,
    )
    assert hook.status_code == 201, hook.text
    assert hook.json()["params_template"]["city"] == "{{ payload.place.name }}"
    path = urlsplit(hook.json()["url"]).path

    accepted = await api.post(path, json={"place": {"name": "Oslo"}, "n": 5})
    assert accepted.status_code == 202, accepted.text
    task = await task_in(api, tenant, accepted.json()["task_id"])
    assert task["params"] == {"city": "Oslo", "days": 5, "units": None}
    assert task["welcome_message"] == "5 days in Oslo"

    wrong_type = await api.post(path, json={"place": {"name": "Oslo"}, "n": "five"})
    body = assert_error(wrong_type, 422, "invalid_input")
    assert body["error"]["details"][0]["field"] == "params.days"


async def test_a_schedule_starts_every_task_with_its_params(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    agent_id = (
        await make_agent(api, tenant, system_prompt="Forecast for {{ params.city }}.")
    ).json()["id"]
    base = tenant.url(f"/agents/{agent_id}/schedules")
    missing = await api.post(
        base, json={"cron": "@daily", "message": "Daily"}, headers=tenant.headers
    )
    assert_error(missing, 422, "invalid_input")
    created = await api.post(
        base,
        json={"cron": "@daily", "message": "Daily", "params": {"city": "Rome"}},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["params"] == {"city": "Rome", "days": 3, "units": None}

    await temporal_env.client.get_schedule_handle(created.json()["temporal_schedule_id"]).trigger()
    async with asyncio.timeout(30):
        while not (
            tasks := (
                await api.get(tenant.url(f"/tasks?agent_id={agent_id}"), headers=tenant.headers)
            ).json()["items"]
        ):
            await asyncio.sleep(0.2)
    task = await task_in(api, tenant, tasks[0]["id"])
    assert task["status"] == "completed", task["error"]
    assert task["params"] == {"city": "Rome", "days": 3, "units": None}
    await api.delete(f"{base}/{created.json()['id']}", headers=tenant.headers)
