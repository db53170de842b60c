"""Organisations, projects, members and API tokens, as a caller of the API sees them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, event, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.tables import ApiToken
from baton.security import hash_token
from tests.support import Tenant, assert_error, auth, create_token


async def test_an_owner_token_creates_and_lists_projects(api: httpx.AsyncClient, tenant: Tenant):
    created = await api.post("/api/v1/projects", json={"name": "Support"}, headers=tenant.headers)
    assert created.status_code == 201
    assert created.json()["org_id"] == tenant.org_id

    listed = await api.get("/api/v1/projects", headers=tenant.headers)
    assert {p["name"] for p in listed.json()["items"]} == {"Test project", "Support"}


async def test_bearer_and_token_schemes_both_authenticate(api: httpx.AsyncClient, tenant: Tenant):
    for scheme in ("Token", "Bearer"):
        response = await api.get(
            "/api/v1/projects", headers={"Authorization": f"{scheme} {tenant.token}"}
        )
        assert response.status_code == 200


async def test_missing_or_bad_token_is_401(api: httpx.AsyncClient, tenant: Tenant):
    assert_error(await api.get("/api/v1/projects"), 401, "unauthenticated")
    assert_error(await api.get("/api/v1/projects", headers=auth("bt_nope")), 401, "unauthenticated")
    assert_error(
        await api.get("/api/v1/projects", headers={"Authorization": "Basic abc"}),
        401,
        "unauthenticated",
    )


async def test_another_organisations_project_is_not_found(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    mine = await api.get(tenant.url(), headers=tenant.headers)
    assert mine.status_code == 200
    theirs = await api.get(other_tenant.url(), headers=tenant.headers)
    assert_error(theirs, 404, "not_found")
    # Their project cannot be reached through any nested resource either.
    assert_error(await api.get(other_tenant.url("/agents"), headers=tenant.headers), 404)
    assert_error(await api.get(other_tenant.url("/tasks"), headers=tenant.headers), 404)
    listed = await api.get("/api/v1/projects", headers=tenant.headers)
    assert other_tenant.project_id not in {p["id"] for p in listed.json()["items"]}


async def test_a_viewer_reads_but_cannot_create(api: httpx.AsyncClient, tenant: Tenant):
    viewer = await create_token(api, tenant.headers, role="viewer")
    headers = auth(viewer["token"])

    assert (await api.get(tenant.url("/agents"), headers=headers)).status_code == 200
    assert_error(
        await api.post(
            tenant.url("/agents"), json={"name": "a", "model": "scripted:echo"}, headers=headers
        ),
        403,
        "permission_denied",
    )
    assert_error(await api.post("/api/v1/projects", json={"name": "x"}, headers=headers), 403)
    assert_error(await api.post("/api/v1/tokens", json={"name": "x"}, headers=headers), 403)


async def test_a_project_token_cannot_touch_another_project(api: httpx.AsyncClient, tenant: Tenant):
    second = (
        await api.post("/api/v1/projects", json={"name": "Second"}, headers=tenant.headers)
    ).json()
    scoped = await create_token(api, tenant.headers, role="admin", project_id=tenant.project_id)
    headers = auth(scoped["token"])

    assert (await api.get(tenant.url("/agents"), headers=headers)).status_code == 200
    assert_error(await api.get(f"/api/v1/projects/{second['id']}/agents", headers=headers), 404)
    listed = await api.get("/api/v1/projects", headers=headers)
    assert [p["id"] for p in listed.json()["items"]] == [tenant.project_id]
    # Nor can it mint a token for the other project, or for the whole organisation.
    assert_error(
        await api.post(
            "/api/v1/tokens", json={"name": "x", "project_id": second["id"]}, headers=headers
        ),
        403,
    )
    assert_error(await api.post("/api/v1/tokens", json={"name": "x"}, headers=headers), 403)
    assert_error(await api.post("/api/v1/projects", json={"name": "x"}, headers=headers), 403)


async def test_nobody_grants_a_role_above_their_own(api: httpx.AsyncClient, tenant: Tenant):
    admin = await create_token(api, tenant.headers, role="admin")
    response = await api.post(
        "/api/v1/tokens", json={"name": "x", "role": "owner"}, headers=auth(admin["token"])
    )
    assert_error(response, 403, "permission_denied")
    response = await api.post(
        "/api/v1/members",
        json={"email": "boss@example.com", "role": "owner"},
        headers=auth(admin["token"]),
    )
    assert_error(response, 403, "permission_denied")


async def test_a_token_is_shown_once_and_stored_only_as_a_hash(
    api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    created = await create_token(api, tenant.headers, name="ci", role="editor")
    token = created["token"]
    assert token.startswith("bt_") and created["prefix"] == token[:10]

    listed = (await api.get("/api/v1/tokens", headers=tenant.headers)).json()["items"]
    assert all("token" not in row and "token_hash" not in row for row in listed)
    assert token not in str(listed)

    async with session_factory() as session:
        row = await session.get(ApiToken, created["id"])
        assert row is not None and row.token_hash == hash_token(token)
        # No column of any token row holds the plain token.
        dumped = (await session.execute(text("SELECT * FROM api_tokens"))).all()
        assert token not in str(dumped)


async def test_use_records_last_used_time(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    created = await create_token(api, tenant.headers, role="viewer")
    assert created["last_used_at"] is None
    await api.get("/api/v1/projects", headers=auth(created["token"]))
    async with session_factory() as session:
        row = await session.get(ApiToken, created["id"])
        assert row is not None and row.last_used_at is not None
        first_use = row.last_used_at

    # Within the minute, further requests write nothing: no database write per request.
    statements: list[str] = []
    engine = Engine  # every engine: the app's own is not the test's

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            assert (await api.get("/api/v1/projects", headers=auth(created["token"]))).is_success
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements and not [s for s in statements if "UPDATE api_tokens" in s]
    async with session_factory() as session:
        row = await session.get(ApiToken, created["id"])
        assert row is not None and row.last_used_at == first_use

    # A minute later, the next request records it again.
    async with session_factory.begin() as session:
        row = await session.get(ApiToken, created["id"])
        assert row is not None
        row.last_used_at = first_use - timedelta(minutes=2)
    await api.get("/api/v1/projects", headers=auth(created["token"]))
    async with session_factory() as session:
        row = await session.get(ApiToken, created["id"])
        assert row is not None and row.last_used_at is not None
        assert row.last_used_at > first_use - timedelta(minutes=1)


async def test_a_revoked_token_stops_working_at_once(api: httpx.AsyncClient, tenant: Tenant):
    created = await create_token(api, tenant.headers, role="editor")
    headers = auth(created["token"])
    assert (await api.get("/api/v1/projects", headers=headers)).status_code == 200

    revoked = await api.delete(f"/api/v1/tokens/{created['id']}", headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_error(await api.get("/api/v1/projects", headers=headers), 401)


async def test_another_organisations_token_cannot_be_revoked(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    theirs = await create_token(api, other_tenant.headers, role="viewer")
    assert_error(await api.delete(f"/api/v1/tokens/{theirs['id']}", headers=tenant.headers), 404)
    assert (await api.get("/api/v1/projects", headers=auth(theirs["token"]))).status_code == 200


async def test_an_expired_token_is_refused(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    soon = datetime.now(UTC) + timedelta(hours=1)
    created = await create_token(api, tenant.headers, role="viewer", expires_at=soon.isoformat())
    headers = auth(created["token"])
    assert (await api.get("/api/v1/projects", headers=headers)).status_code == 200

    async with session_factory.begin() as session:
        row = (await session.scalars(select(ApiToken).where(ApiToken.id == created["id"]))).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    response = await api.get("/api/v1/projects", headers=headers)
    assert_error(response, 401)
    assert "expired" in response.json()["error"]["message"]


async def test_an_expiry_in_the_past_is_refused(api: httpx.AsyncClient, tenant: Tenant):
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    response = await api.post(
        "/api/v1/tokens", json={"name": "x", "expires_at": past}, headers=tenant.headers
    )
    assert_error(response, 422, "invalid_input")


async def test_members_of_the_organisation_and_of_a_project(api: httpx.AsyncClient, tenant: Tenant):
    added = await api.post(
        "/api/v1/members",
        json={"email": "Ada@Example.com", "name": "Ada", "role": "editor"},
        headers=tenant.headers,
    )
    assert added.status_code == 201
    assert added.json()["email"] == "ada@example.com"
    again = await api.post(
        "/api/v1/members", json={"email": "ada@example.com"}, headers=tenant.headers
    )
    assert_error(again, 409, "conflict")

    in_project = await api.post(
        tenant.url("/members"),
        json={"email": "ada@example.com", "role": "admin"},
        headers=tenant.headers,
    )
    assert in_project.status_code == 201
    assert in_project.json()["project_id"] == tenant.project_id

    org_members = (await api.get("/api/v1/members", headers=tenant.headers)).json()["items"]
    project_members = (await api.get(tenant.url("/members"), headers=tenant.headers)).json()[
        "items"
    ]
    assert [(m["email"], m["role"]) for m in org_members] == [("ada@example.com", "editor")]
    assert [(m["email"], m["role"]) for m in project_members] == [("ada@example.com", "admin")]

    removed = await api.delete(f"/api/v1/members/{org_members[0]['id']}", headers=tenant.headers)
    assert removed.status_code == 204
    assert (await api.get("/api/v1/members", headers=tenant.headers)).json()["items"] == []


async def test_a_bad_member_email_is_a_clear_422(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.post(
        "/api/v1/members", json={"email": "not-an-email"}, headers=tenant.headers
    )
    body = assert_error(response, 422, "invalid_input")
    assert body["error"]["details"][0]["loc"] == ["body", "email"]


async def test_an_admin_cannot_revoke_an_owners_token(api: httpx.AsyncClient, tenant: Tenant):
    owner = await create_token(api, tenant.headers, role="owner")
    admin = await create_token(api, tenant.headers, role="admin")

    refused = await api.delete(f"/api/v1/tokens/{owner['id']}", headers=auth(admin["token"]))
    assert_error(refused, 403, "permission_denied")
    assert (await api.get("/api/v1/projects", headers=auth(owner["token"]))).status_code == 200

    # An owner may: the bootstrap token revokes the second owner token.
    revoked = await api.delete(f"/api/v1/tokens/{owner['id']}", headers=tenant.headers)
    assert revoked.status_code == 200
    assert_error(await api.get("/api/v1/projects", headers=auth(owner["token"])), 401)


async def test_the_last_owner_token_cannot_be_revoked(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    async with session_factory() as session:
        bootstrap = (
            await session.scalars(
                select(ApiToken).where(ApiToken.token_hash == hash_token(tenant.token))
            )
        ).one()
    refused = await api.delete(f"/api/v1/tokens/{bootstrap.id}", headers=tenant.headers)
    assert_error(refused, 409, "conflict")
    assert (await api.get("/api/v1/projects", headers=tenant.headers)).status_code == 200

    successor = await create_token(api, tenant.headers, role="owner")
    revoked = await api.delete(f"/api/v1/tokens/{bootstrap.id}", headers=auth(successor["token"]))
    assert revoked.status_code == 200


async def test_an_admin_cannot_remove_an_owner_and_nobody_removes_the_last(
    api: httpx.AsyncClient, tenant: Tenant
):
    admin = auth((await create_token(api, tenant.headers, role="admin"))["token"])
    first = await api.post(
        "/api/v1/members",
        json={"email": "ada@example.com", "role": "owner"},
        headers=tenant.headers,
    )
    assert first.status_code == 201
    refused = await api.delete(f"/api/v1/members/{first.json()['id']}", headers=admin)
    assert_error(refused, 403, "permission_denied")

    last = await api.delete(f"/api/v1/members/{first.json()['id']}", headers=tenant.headers)
    assert_error(last, 409, "conflict")
    assert "last owner" in last.json()["error"]["message"]

    second = await api.post(
        "/api/v1/members", json={"email": "bo@example.com", "role": "owner"}, headers=tenant.headers
    )
    removed = await api.delete(f"/api/v1/members/{first.json()['id']}", headers=tenant.headers)
    assert removed.status_code == 204
    members = (await api.get("/api/v1/members", headers=tenant.headers)).json()["items"]
    assert [m["id"] for m in members] == [second.json()["id"]]
