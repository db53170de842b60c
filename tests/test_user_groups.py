"""`POST /api/user`: creating user groups and rotating their tokens, as documented."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support import Tenant, assert_error, auth, create_token, items_of


async def create_group(api: httpx.AsyncClient, tenant: Tenant, **body: str) -> httpx.Response:
    return await api.post(
        "/api/user",
        json={"current_token": "", "name": "Example 1", "provided_id": "example_1", **body},
        headers=tenant.headers,
    )


async def test_creating_a_user_group_answers_as_documented(api: httpx.AsyncClient, tenant: Tenant):
    response = await create_group(api, tenant)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] == 1
    group = body["user_group"]
    assert group["team_id"] == tenant.org_id
    assert group["name"] == "Example 1"
    assert group["provided_id"] == "example_1"
    assert group["environment"] == "Customer"
    assert group["token"].startswith("btug_")


async def test_user_group_id_is_accepted_for_provided_id(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.post(
        "/api/user",
        json={"name": "Acme", "user_group_id": "acme"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    assert response.json()["user_group"]["provided_id"] == "acme"


async def test_the_same_provided_id_once_per_environment(api: httpx.AsyncClient, tenant: Tenant):
    assert (await create_group(api, tenant)).status_code == 200
    testing = await create_group(api, tenant, environment="Testing")
    assert testing.status_code == 200
    assert testing.json()["user_group"]["environment"] == "Testing"

    duplicate = await create_group(api, tenant, environment="Testing")
    body = assert_error(duplicate, 409, "conflict")
    assert body["success"] == 0


async def test_another_organisation_may_use_the_same_provided_id(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    assert (await create_group(api, tenant)).status_code == 200
    assert (await create_group(api, other_tenant)).status_code == 200


async def test_rotation_returns_a_new_token_and_the_old_one_stops_at_once(
    api: httpx.AsyncClient, tenant: Tenant
):
    old = (await create_group(api, tenant)).json()["user_group"]["token"]
    assert (await api.get(tenant.url("/tasks"), headers=auth(old))).status_code == 200

    rotated = await api.post("/api/user", json={"current_token": old}, headers=tenant.headers)
    assert rotated.status_code == 200
    group = rotated.json()["user_group"]
    assert group["token"] != old and group["provided_id"] == "example_1"

    assert_error(await api.get(tenant.url("/tasks"), headers=auth(old)), 401)
    assert (await api.get(tenant.url("/tasks"), headers=auth(group["token"]))).status_code == 200
    # Rotating with the old token again finds nothing.
    again = await api.post("/api/user", json={"current_token": old}, headers=tenant.headers)
    assert assert_error(again, 404)["success"] == 0


async def test_another_organisation_cannot_rotate_a_group(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    token = (await create_group(api, tenant)).json()["user_group"]["token"]
    response = await api.post(
        "/api/user", json={"current_token": token}, headers=other_tenant.headers
    )
    assert assert_error(response, 404)["success"] == 0
    assert (await api.get(tenant.url("/tasks"), headers=auth(token))).status_code == 200


async def test_every_failure_says_success_0(api: httpx.AsyncClient, tenant: Tenant):
    missing = await api.post("/api/user", json={"current_token": ""}, headers=tenant.headers)
    assert assert_error(missing, 422, "invalid_input")["success"] == 0
    assert missing.json()["error"]["details"] == {"missing": ["name", "provided_id"]}

    bad_env = await create_group(api, tenant, environment="Production")
    assert assert_error(bad_env, 422)["success"] == 0

    no_auth = await api.post("/api/user", json={"name": "a", "provided_id": "b"})
    assert assert_error(no_auth, 401)["success"] == 0

    not_json = await api.post(
        "/api/user",
        content=b"{nope",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert assert_error(not_json, 400, "invalid_json")["success"] == 0


async def test_a_project_token_or_a_viewer_cannot_manage_user_groups(
    api: httpx.AsyncClient, tenant: Tenant
):
    project_admin = await create_token(
        api, tenant.headers, role="admin", project_id=tenant.project_id
    )
    response = await api.post(
        "/api/user", json={"name": "a", "provided_id": "b"}, headers=auth(project_admin["token"])
    )
    assert assert_error(response, 403)["success"] == 0
    viewer = await create_token(api, tenant.headers, role="viewer")
    response = await api.post(
        "/api/user", json={"name": "a", "provided_id": "b"}, headers=auth(viewer["token"])
    )
    assert assert_error(response, 403)["success"] == 0


async def test_user_group_tokens_are_stored_only_as_hashes(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    token = (await create_group(api, tenant)).json()["user_group"]["token"]
    async with session_factory() as session:
        rows = (await session.execute(text("SELECT * FROM user_groups"))).all()
    assert rows and token not in str(rows)


async def test_user_groups_are_listed_and_deleted(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    token = (await create_group(api, tenant)).json()["user_group"]["token"]
    listed = (await api.get("/api/v1/user-groups", headers=tenant.headers)).json()["items"]
    assert [g["provided_id"] for g in listed] == ["example_1"]
    assert "token" not in listed[0]
    assert await items_of(api, "/api/v1/user-groups", other_tenant.headers) == []

    group_id = listed[0]["id"]
    assert_error(
        await api.delete(f"/api/v1/user-groups/{group_id}", headers=other_tenant.headers), 404
    )
    deleted = await api.delete(f"/api/v1/user-groups/{group_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await api.get("/api/v1/user-groups", headers=tenant.headers)).json()["items"] == []
    assert_error(await api.get(tenant.url("/tasks"), headers=auth(token)), 401)


async def test_a_user_group_token_cannot_manage_the_organisation(
    api: httpx.AsyncClient, tenant: Tenant
):
    token = (await create_group(api, tenant)).json()["user_group"]["token"]
    headers = auth(token)
    assert_error(await api.post("/api/v1/projects", json={"name": "x"}, headers=headers), 403)
    assert_error(await api.get("/api/v1/tokens", headers=headers), 403)
    assert_error(await api.post(tenant.url("/agents"), json={"name": "a"}, headers=headers), 403)
