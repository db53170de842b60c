"""Every list answers one page, `{"items", "next_cursor"}`: the pages of a list hold each of its
items once, in its order, whatever is added meanwhile; `limit` is bounded and a cursor that
no list gave is a 422."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.tables import Agent, Task
from tests.support import Tenant, assert_error, items_of


async def pages(api: httpx.AsyncClient, url: str, headers: dict[str, str], limit: int) -> list[Any]:
    """The pages of a list, each a list of its items."""
    found: list[Any] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = await api.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        found.append(page["items"])
        if page["next_cursor"] is None:
            return found
        params = {"limit": limit, "cursor": page["next_cursor"]}


async def test_a_list_reads_page_after_page_each_item_once(api: httpx.AsyncClient, tenant: Tenant):
    names = [f"agent {i}" for i in range(5)]
    for name in names:
        created = await api.post(tenant.url("/agents"), json={"name": name}, headers=tenant.headers)
        assert created.status_code == 201, created.text

    read = await pages(api, tenant.url("/agents"), tenant.headers, limit=2)
    assert [len(page) for page in read] == [2, 2, 1]
    assert [a["name"] for page in read for a in page] == names  # oldest first
    assert [a["name"] for a in await items_of(api, tenant.url("/agents"), tenant.headers)] == names

    # A cursor goes on where it stopped even after an item is added before it.
    first = await api.get(tenant.url("/agents"), params={"limit": 2}, headers=tenant.headers)
    cursor = first.json()["next_cursor"]
    await api.post(tenant.url("/agents"), json={"name": "late"}, headers=tenant.headers)
    rest = await api.get(
        tenant.url("/agents"), params={"limit": 10, "cursor": cursor}, headers=tenant.headers
    )
    assert [a["name"] for a in rest.json()["items"]] == [*names[2:], "late"]
    assert rest.json()["next_cursor"] is None


async def test_newest_first_lists_break_ties_by_id(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    """Tasks come newest first; tasks created in the same instant are each read once."""
    now = datetime.now(UTC)
    async with session_factory.begin() as session:
        agent = Agent(project_id=tenant.project_id, name="a", spec={"name": "a"}, version=1)
        session.add(agent)
        await session.flush()
        moments = [now, now, now - timedelta(seconds=1), now - timedelta(seconds=1), now]
        for moment in moments:
            session.add(
                Task(
                    project_id=tenant.project_id,
                    agent_id=agent.id,
                    workflow_id=f"task-{uuid.uuid4()}",
                    status="completed",
                    created_at=moment,
                    updated_at=moment,
                )
            )
    read = await pages(api, tenant.url("/tasks"), tenant.headers, limit=2)
    listed = [task for page in read for task in page]
    assert len(listed) == 5 and len({t["id"] for t in listed}) == 5
    assert [len(page) for page in read] == [2, 2, 1]
    keys = [(t["created_at"], t["id"]) for t in listed]
    newest_first = sorted(keys, key=lambda key: key[1])
    newest_first.sort(key=lambda key: datetime.fromisoformat(key[0]), reverse=True)
    assert keys == newest_first


async def test_a_list_held_in_memory_pages_the_same_way(api: httpx.AsyncClient):
    read = await pages(api, "/api/v1/tool-templates", {}, limit=5)
    ids = [t["id"] for page in read for t in page]
    assert len(read) >= 2 and all(len(page) == 5 for page in read[:-1])
    assert ids == sorted(set(ids))


@pytest.mark.parametrize(
    "path",
    [
        "/agents",
        "/tools",
        "/tool-runs",
        "/tasks",
        "/knowledge/sets",
        "/integrations",
        "/secrets",
        "/snippets",
        "/members",
    ],
)
async def test_every_project_list_answers_a_page(api: httpx.AsyncClient, tenant: Tenant, path: str):
    response = await api.get(tenant.url(path), params={"limit": 1}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"items", "next_cursor"}
    too_many = await api.get(tenant.url(path), params={"limit": 201}, headers=tenant.headers)
    assert_error(too_many, 422, "invalid_input")
    bad = await api.get(tenant.url(path), params={"cursor": "x"}, headers=tenant.headers)
    assert assert_error(bad, 422, "invalid_input")["error"]["details"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    "path", ["/api/v1/projects", "/api/v1/members", "/api/v1/tokens", "/api/v1/user-groups"]
)
async def test_every_organisation_list_answers_a_page(
    api: httpx.AsyncClient, tenant: Tenant, path: str
):
    response = await api.get(path, params={"limit": 1}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"items", "next_cursor"}
