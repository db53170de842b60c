"""Agents, tools, tasks, tool runs and knowledge sets made through the API as a user makes
them, and the readers that wait for them to get somewhere (all on `eventually()`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support.client import body_of
from tests.support.polling import eventually
from tests.support.tenants import Tenant

# A task's statuses that no longer change.
FINAL = frozenset({"completed", "failed", "cancelled", "timed-out"})
# A tool run's.
RUN_FINAL = frozenset({"succeeded", "failed", "cancelled"})


async def make_tool(api: httpx.AsyncClient, tenant: Tenant, name: str = "Echo tool") -> str:
    """A tool of one template step that repeats its `text` param."""
    response = await api.post(
        tenant.url("/tools"),
        json={
            "name": name,
            "description": "Repeats its text",
            "params": [{"name": "text", "type": "text"}],
            "steps": [
                {"name": "say", "type": "template", "template": "tool got {{ params.text }}"}
            ],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    tool_id: str = response.json()["id"]
    return tool_id


async def make_agent(
    api: httpx.AsyncClient, tenant: Tenant, *, tools: list[dict[str, Any]], **spec: Any
) -> str:
    """An agent on the scripted model that calls tools (`scripted:tools`) unless `spec`
    names another."""
    body = {"name": "Helper", "model": "scripted:tools", "tools": tools, **spec}
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def start_task(
    api: httpx.AsyncClient, tenant: Tenant, agent_id: str, message: str, **extra: Any
) -> str:
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/tasks"),
        json={"message": message, **extra},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


async def make_set(api: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    """A knowledge set made from `body` (its name, columns, embedding...), with no rows."""
    response = await api.post(tenant.url("/knowledge/sets"), json=body, headers=tenant.headers)
    return body_of(response, 201)


async def filled_set(
    api: httpx.AsyncClient, tenant: Tenant, rows: list[dict[str, Any]], **body: Any
) -> tuple[dict[str, Any], list[int]]:
    """A knowledge set made from `body` and given `rows`, and the ids of those rows (an
    embedding set starts embedding them)."""
    knowledge_set = await make_set(api, tenant, **body)
    response = await api.post(
        tenant.url(f"/knowledge/sets/{knowledge_set['id']}/rows"), json=rows, headers=tenant.headers
    )
    row_ids: list[int] = body_of(response, 201)["row_ids"]
    return knowledge_set, row_ids


async def read_until(
    api: httpx.AsyncClient,
    tenant: Tenant,
    url: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30,
    what: str,
) -> dict[str, Any]:
    """What the tenant reads at `url` (a 200 each time) once `until` holds for it, for a
    resource that gets somewhere in its own time (`what` names it if it never does)."""

    async def read() -> dict[str, Any] | None:
        found = body_of(await api.get(url, headers=tenant.headers))
        return found if until(found) else None

    return await eventually(read, timeout=timeout, what=what)


async def task_in(
    api: httpx.AsyncClient,
    tenant: Tenant,
    task_id: str,
    statuses: set[str] | frozenset[str] = FINAL,
    timeout: float = 30,
) -> dict[str, Any]:
    """The task as the API shows it once its status is one of `statuses`."""

    async def read() -> dict[str, Any] | None:
        response = await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
        task: dict[str, Any] = response.json()
        return task if task["status"] in statuses else None

    return await eventually(
        read, timeout=timeout, what=f"task {task_id} to be {' or '.join(sorted(statuses))}"
    )


async def finished_run(
    api: httpx.AsyncClient, tenant: Tenant, run_id: str, *, timeout: float = 60
) -> dict[str, Any]:
    """The tool run as the API shows it once it has finished."""

    async def read() -> dict[str, Any] | None:
        response = await api.get(tenant.url(f"/tool-runs/{run_id}"), headers=tenant.headers)
        run: dict[str, Any] = response.json()
        return run if run["status"] in RUN_FINAL else None

    return await eventually(read, timeout=timeout, what=f"tool run {run_id} to finish")
