"""The walking skeleton: API -> Temporal -> worker -> database -> API, with real parts."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.domain.models import SCRIPTED_LABEL
from baton.settings import Settings
from tests.support import Tenant, api_client, assert_error, auth
from tests.support.factories import task_in


# Other test modules import it from here; new tests use tests.support.factories.task_in.
async def wait_for_task(
    api: httpx.AsyncClient, tenant: Tenant, task_id: str, timeout: float = 30
) -> dict[str, Any]:
    return await task_in(api, tenant, task_id, timeout=timeout)


async def create_agent(api: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    spec = {"name": "Echo", "system_prompt": "Answer briefly.", "model": "scripted:echo", **body}
    response = await api.post(tenant.url("/agents"), json=spec, headers=tenant.headers)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def test_a_task_runs_to_the_models_answer(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, settings: Settings
):
    agent = await create_agent(api, tenant)
    started = await api.post(
        tenant.url(f"/agents/{agent['id']}/tasks"),
        json={"message": "What is Baton?"},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["workflow_id"] == f"task-{body['id']}"
    assert body["status"] == "queued"
    assert body["temporal_ui_url"] == (
        f"http://localhost:8233/namespaces/default/workflows/{body['workflow_id']}"
    )

    task = await task_in(api, tenant, body["id"])
    assert task["status"] == "completed"
    assert task["messages"] == [
        {"role": "user", "content": "What is Baton?"},
        {"role": "assistant", "content": f"{SCRIPTED_LABEL} You said: What is Baton?"},
    ]
    listed = await api.get(tenant.url("/tasks"), headers=tenant.headers)
    assert [t["id"] for t in listed.json()["items"]] == [body["id"]]


async def test_a_task_is_findable_by_its_search_attributes(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    agent = await create_agent(api, tenant)
    started = await api.post(
        tenant.url(f"/agents/{agent['id']}/tasks"), json={"message": "hi"}, headers=tenant.headers
    )
    workflow_id = started.json()["workflow_id"]
    await task_in(api, tenant, started.json()["id"])

    query = (
        f"BatonProject='{tenant.project_id}' AND BatonAgent='{agent['id']}' "
        "AND BatonKind='agent-task' AND BatonStatus='completed'"
    )
    async with asyncio.timeout(20):  # visibility is eventually consistent
        while True:
            found = [w.id async for w in temporal_env.client.list_workflows(query)]
            if found:
                break
            await asyncio.sleep(0.2)
    assert found == [workflow_id]


async def test_a_task_waits_for_a_worker_and_loses_nothing(
    api: httpx.AsyncClient,
    tenant: Tenant,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    session_factory: Any,
):
    """Triggered while no worker runs, the task stays queued in Temporal and finishes once a
    worker starts."""
    from worker import create_worker

    agent = await create_agent(api, tenant)
    started = await api.post(
        tenant.url(f"/agents/{agent['id']}/tasks"),
        json={"message": "later"},
        headers=tenant.headers,
    )
    task_id = started.json()["id"]
    await asyncio.sleep(1)
    pending = await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
    assert pending.json()["status"] == "queued"

    async with create_worker(
        temporal_env.client, task_queue=task_queue, session_factory=session_factory
    ):
        task = await task_in(api, tenant, task_id)
    assert task["status"] == "completed"
    assert task["messages"][-1]["content"].endswith("You said: later")


async def test_another_tenant_and_a_user_group_cannot_see_the_task(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, worker: Worker
):
    agent = await create_agent(api, tenant)
    started = await api.post(
        tenant.url(f"/agents/{agent['id']}/tasks"), json={"message": "x"}, headers=tenant.headers
    )
    task_id = started.json()["id"]

    assert_error(await api.get(tenant.url(f"/tasks/{task_id}"), headers=other_tenant.headers), 404)
    assert_error(
        await api.get(
            f"/api/v1/projects/{other_tenant.project_id}/tasks/{task_id}",
            headers=other_tenant.headers,
        ),
        404,
    )
    assert_error(
        await api.get(tenant.url(f"/agents/{agent['id']}"), headers=other_tenant.headers), 404
    )

    group = await api.post(
        "/api/user", json={"name": "Acme", "provided_id": "acme"}, headers=tenant.headers
    )
    group_headers = auth(group.json()["user_group"]["token"])
    assert (await api.get(tenant.url("/tasks"), headers=group_headers)).json()["items"] == []
    assert_error(await api.get(tenant.url(f"/tasks/{task_id}"), headers=group_headers), 404)


async def test_agents_are_created_read_updated_and_deleted(api: httpx.AsyncClient, tenant: Tenant):
    agent = await create_agent(api, tenant, description="first")
    assert agent["model"] == "scripted:echo" and agent["description"] == "first"

    updated = await api.patch(
        tenant.url(f"/agents/{agent['id']}"),
        json={"system_prompt": "Be terse.", "temperature": 0.5},
        headers=tenant.headers,
    )
    assert updated.status_code == 200
    assert updated.json()["system_prompt"] == "Be terse."
    assert updated.json()["name"] == "Echo"

    read = await api.get(tenant.url(f"/agents/{agent['id']}"), headers=tenant.headers)
    assert read.json()["temperature"] == 0.5

    deleted = await api.delete(tenant.url(f"/agents/{agent['id']}"), headers=tenant.headers)
    assert deleted.status_code == 204
    assert_error(await api.get(tenant.url(f"/agents/{agent['id']}"), headers=tenant.headers), 404)


async def test_a_bad_agent_definition_names_the_field(api: httpx.AsyncClient, tenant: Tenant):
    for body, field in (
        ({"name": "a", "model": "gpt-4o"}, "model"),
        ({"name": "a", "model": "nowhere:model"}, "model"),
        ({"name": "", "model": "scripted:echo"}, "name"),
        ({"name": "a", "temperature": 9}, "temperature"),
        ({"name": "a", "colour": "blue"}, "colour"),
    ):
        response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
        details = assert_error(response, 422, "invalid_input")["error"]["details"]
        assert details[0]["loc"] == ["body", field], (body, details)

    agent = await create_agent(api, tenant)
    response = await api.patch(
        tenant.url(f"/agents/{agent['id']}"), json={"name": None}, headers=tenant.headers
    )
    assert_error(response, 422, "invalid_input")


async def test_an_empty_message_is_refused(api: httpx.AsyncClient, tenant: Tenant):
    agent = await create_agent(api, tenant)
    response = await api.post(
        tenant.url(f"/agents/{agent['id']}/tasks"), json={"message": ""}, headers=tenant.headers
    )
    assert_error(response, 422, "invalid_input")


async def test_temporal_unreachable_answers_503_and_records_the_failure(
    settings: Settings, tenant: Tenant
):
    unreachable = await Client.connect(
        "127.0.0.1:1", lazy=True, data_converter=pydantic_data_converter
    )
    async with api_client(settings, unreachable) as api:
        agent = await create_agent(api, tenant)
        started = await api.post(
            tenant.url(f"/agents/{agent['id']}/tasks"),
            json={"message": "x"},
            headers=tenant.headers,
        )
        body = assert_error(started, 503, "service_unavailable")
        task_id = body["error"]["details"]["task_id"]
        task = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
        assert task["status"] == "failed"
        assert "Temporal is unavailable" in task["error"]
        health = (await api.get("/api/health")).json()
        assert health == {"status": "ok", "database": "ok", "temporal": "unavailable"}


async def test_health_reports_both_parts(api: httpx.AsyncClient):
    response = await api.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}
