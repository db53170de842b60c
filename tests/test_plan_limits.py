"""Sizes and counts from the organisation's plan: an upload's bytes and an import's rows (the
plan's, under the installation's ceilings), and the projects and members it may have. Past
one, a clear error names the limit: 413 for a size, 402 plan_limit_reached for a count (the
caller may do it; the plan is what is missing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from baton.db.tables import Organization
from baton.settings import Settings
from tests.support import Tenant, api_client, assert_error, items_of
from tests.test_knowledge import all_rows, multipart, new_set, set_url, stream

Sessions = async_sessionmaker[AsyncSession]
PLANS = """
small:
  max_projects: 2
  max_members: 1
  max_upload_bytes: 2000
  max_rows_per_import: 3
"""


def small_settings(settings: Settings, tmp_path: Path, **ceilings: int) -> Settings:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS)
    return settings.model_copy(update={"plans_file": plans, **ceilings})


@pytest.fixture
async def small_api(
    settings: Settings, tmp_path: Path, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(small_settings(settings, tmp_path), temporal_env.client) as client:
        yield client


@pytest.fixture
async def tenant_on_small(tenant: Tenant, session_factory: Sessions) -> Tenant:
    async with session_factory.begin() as session:
        await session.execute(
            update(Organization).where(Organization.id == tenant.org_id).values(plan="small")
        )
    return tenant


async def upload(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, object], lines: list[bytes]
) -> httpx.Response:
    headers, body = multipart("rows.jsonl", iter(lines))
    return await api.post(
        set_url(tenant, knowledge_set, "/imports"),
        content=stream(body),
        headers={**tenant.headers, **headers},
    )


def jsonl(count: int) -> list[bytes]:
    return [f'{{"n": {i}}}\n'.encode() for i in range(count)]


async def test_an_upload_past_the_plans_bytes_is_refused_naming_the_limit(
    small_api: httpx.AsyncClient, tenant_on_small: Tenant
):
    tenant = tenant_on_small
    counters = await new_set(small_api, tenant, name="counters", columns=[])
    # Blank lines: no rows, so the byte limit is what stops it.
    refused = await upload(small_api, tenant, counters, [b" " * 999 + b"\n"] * 3)
    error = assert_error(refused, 413, "payload_too_large")["error"]
    assert "larger than 2000 bytes" in error["message"] and "max_upload_bytes" in error["message"]
    assert error["details"] == {"limit": "max_upload_bytes", "max_bytes": 2000}
    fits = await upload(small_api, tenant, counters, [b" " * 999 + b"\n"] * 2)
    assert fits.status_code == 201, fits.text


async def test_an_import_past_the_plans_rows_is_refused_and_adds_nothing(
    small_api: httpx.AsyncClient, tenant_on_small: Tenant
):
    tenant = tenant_on_small
    counters = await new_set(small_api, tenant, name="counters", columns=[])
    refused = await upload(small_api, tenant, counters, jsonl(4))
    error = assert_error(refused, 413, "payload_too_large")["error"]
    assert "more than 3 rows" in error["message"] and "max_rows_per_import" in error["message"]
    assert await all_rows(small_api, tenant, counters) == []
    [job] = await items_of(small_api, set_url(tenant, counters, "/jobs"), tenant.headers)
    assert job["status"] == "failed" and "more than 3 rows" in job["error"]

    text = await small_api.post(
        set_url(tenant, counters, "/imports/text"),
        json={"text": "one two three four", "chunk_size": 1, "overlap": 0},
        headers=tenant.headers,
    )
    assert (
        "more than 3 (the plan's max_rows_per_import)"
        in assert_error(text, 413)["error"]["message"]
    )
    accepted = await upload(small_api, tenant, counters, jsonl(3))
    assert accepted.status_code == 201, accepted.text
    assert len(await all_rows(small_api, tenant, counters)) == 3


async def test_the_installations_ceiling_caps_a_larger_plan(
    settings: Settings,
    tmp_path: Path,
    temporal_env: WorkflowEnvironment,
    tenant_on_small: Tenant,
):
    capped = small_settings(settings, tmp_path, max_rows_per_import=2)
    async with api_client(capped, temporal_env.client) as api:
        limits = (await api.get("/api/v1/credits", headers=tenant_on_small.headers)).json()
        assert limits["limits"]["max_rows_per_import"] == 2
        counters = await new_set(api, tenant_on_small, name="counters", columns=[])
        refused = await upload(api, tenant_on_small, counters, jsonl(3))
        assert "more than 2 rows" in assert_error(refused, 413)["error"]["message"]


async def test_a_project_past_the_plans_max_is_refused_with_402(
    small_api: httpx.AsyncClient, tenant_on_small: Tenant, other_tenant: Tenant
):
    tenant = tenant_on_small  # it has one project already
    second = await small_api.post("/api/v1/projects", json={"name": "two"}, headers=tenant.headers)
    assert second.status_code == 201, second.text
    third = await small_api.post("/api/v1/projects", json={"name": "three"}, headers=tenant.headers)
    error = assert_error(third, 402, "plan_limit_reached")["error"]
    assert "max_projects=2" in error["message"] and "plan small" in error["message"]
    assert error["details"] == {"limit": "max_projects", "max_projects": 2, "plan": "small"}
    projects = await items_of(small_api, "/api/v1/projects", tenant.headers)
    assert [p["name"] for p in projects][1:] == ["two"]

    # An organisation on the default plan (no limit) is not held to it.
    for name in ("two", "three"):
        made = await small_api.post(
            "/api/v1/projects", json={"name": name}, headers=other_tenant.headers
        )
        assert made.status_code == 201, made.text


async def test_a_member_past_the_plans_max_is_refused_but_one_already_counted_is_not(
    small_api: httpx.AsyncClient, tenant_on_small: Tenant
):
    tenant = tenant_on_small
    first = await small_api.post(
        "/api/v1/members",
        json={"email": "ada@example.com", "name": "Ada", "role": "editor"},
        headers=tenant.headers,
    )
    assert first.status_code == 201, first.text
    # The same person in a project of the organisation is still one member.
    again = await small_api.post(
        tenant.url("/members"),
        json={"email": "Ada@example.com", "name": "Ada", "role": "viewer"},
        headers=tenant.headers,
    )
    assert again.status_code == 201, again.text
    for url in ("/api/v1/members", tenant.url("/members")):
        refused = await small_api.post(
            url,
            json={"email": "bob@example.com", "name": "Bob", "role": "viewer"},
            headers=tenant.headers,
        )
        error = assert_error(refused, 402, "plan_limit_reached")["error"]
        assert "max_members=1" in error["message"]
    members = await items_of(small_api, "/api/v1/members", tenant.headers)
    assert [m["email"] for m in members] == ["ada@example.com"]


async def test_an_organisation_on_a_plan_the_file_no_longer_has_works_under_the_default(
    api: httpx.AsyncClient, tenant: Tenant, settings: Settings, session_factory: Sessions
):
    """An operator removed (or renamed) a plan organisations are on: their requests go on,
    under the default plan, rather than each failing; moving one to such a plan is refused."""
    async with session_factory.begin() as session:
        await session.execute(
            update(Organization).where(Organization.id == tenant.org_id).values(plan="retired")
        )
    shown = await api.get("/api/v1/credits", headers=tenant.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["plan"] == settings.default_plan
    created = await api.post(
        tenant.url("/agents"),
        headers=tenant.headers,
        json={"name": "still works", "model": "scripted:echo", "system_prompt": "Echo."},
    )
    assert created.status_code == 201, created.text
    async with session_factory() as session:
        # The stored plan stays: it applies again once the plans file has it.
        assert (await session.get(Organization, tenant.org_id)).plan == "retired"  # type: ignore[union-attr]
