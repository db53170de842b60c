"""The audit log: every administrative act leaves one entry, written with the act or not at
all; only the organisation's admins and owners read it, newest first; and no entry holds a
secret, however it is encoded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import accounts, audit
from baton.db.tables import ApiToken, AuditEntry
from baton.domain.accounts import Role
from baton.domain.audit import OPERATOR, AuditAction, Target
from baton.settings import Settings
from tests.support import Tenant, assert_error, auth, create_token, items_of
from tests.test_credits import baton_cli
from tests.test_secrets import forms_of

SECRET = "AUDIT-CANARY s3cr3t/+=&?#"
KEY = "sk-audit-canary-0123456789"


async def entries(api: httpx.AsyncClient, tenant: Tenant, **params: str) -> list[dict[str, Any]]:
    response = await api.get("/api/v1/audit", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def own_token_id(api: httpx.AsyncClient, tenant: Tenant) -> str:
    tokens = await items_of(api, "/api/v1/tokens", tenant.headers)
    [owner] = [t for t in tokens if t["name"] == "admin"]
    token_id: str = owner["id"]
    return token_id


async def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return response.json() if response.content else {}


async def every_kind_of_act(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    """One of each administrative act the API has; the ids of what they touched."""
    h = tenant.headers
    token = await create_token(api, h, role="editor", project_id=tenant.project_id)
    await ok(await api.delete(f"/api/v1/tokens/{token['id']}", headers=h))
    org_member = await ok(
        await api.post(
            "/api/v1/members", json={"email": "a@example.com", "role": "admin"}, headers=h
        )
    )
    await ok(await api.delete(f"/api/v1/members/{org_member['id']}", headers=h))
    project_member = await ok(
        await api.post(tenant.url("/members"), json={"email": "b@example.com"}, headers=h)
    )
    await ok(await api.delete(tenant.url(f"/members/{project_member['id']}"), headers=h))
    await ok(await api.put(tenant.url("/secrets/canary"), json={"value": SECRET}, headers=h))
    await ok(await api.delete(tenant.url("/secrets/canary"), headers=h))
    integration = await ok(
        await api.post(
            tenant.url("/integrations"),
            json={"name": "main", "kind": "openai", "api_key": KEY},
            headers=h,
        )
    )
    await ok(
        await api.patch(
            tenant.url("/integrations/main"), json={"name": "renamed", "api_key": KEY}, headers=h
        )
    )
    await ok(await api.delete(tenant.url("/integrations/renamed"), headers=h))
    group = await ok(
        await api.post(
            "/api/user", json={"current_token": "", "name": "G", "provided_id": "g1"}, headers=h
        )
    )
    rotated = await ok(
        await api.post("/api/user", json={"current_token": group["user_group"]["token"]}, headers=h)
    )
    groups = await items_of(api, "/api/v1/user-groups", h)
    await ok(await api.delete(f"/api/v1/user-groups/{groups[0]['id']}", headers=h))
    return {
        "token": token["id"],
        "token_value": token["token"],
        "org_member": org_member["id"],
        "project_member": project_member["id"],
        "integration": integration["id"],
        "user_group": groups[0]["id"],
        "group_token": group["user_group"]["token"],
        "rotated_token": rotated["user_group"]["token"],
    }


async def test_every_administrative_act_leaves_one_entry_newest_first(
    api: httpx.AsyncClient, tenant: Tenant
):
    ids = await every_kind_of_act(api, tenant)
    log = list(reversed(await entries(api, tenant)))
    assert [(e["action"], e["target_type"], e["target_id"], e["project_id"]) for e in log] == [
        ("token.created", "token", ids["token"], tenant.project_id),
        ("token.revoked", "token", ids["token"], tenant.project_id),
        ("member.added", "membership", ids["org_member"], None),
        ("member.removed", "membership", ids["org_member"], None),
        ("member.added", "membership", ids["project_member"], tenant.project_id),
        ("member.removed", "membership", ids["project_member"], tenant.project_id),
        ("secret.written", "secret", "canary", tenant.project_id),
        ("secret.deleted", "secret", "canary", tenant.project_id),
        ("integration.created", "integration", ids["integration"], tenant.project_id),
        ("integration.updated", "integration", ids["integration"], tenant.project_id),
        ("integration.deleted", "integration", ids["integration"], tenant.project_id),
        ("user_group.created", "user_group", ids["user_group"], None),
        ("user_group.rotated", "user_group", ids["user_group"], None),
        ("user_group.deleted", "user_group", ids["user_group"], None),
    ]
    me = await own_token_id(api, tenant)
    assert {(e["actor_kind"], e["actor_id"], e["client"]) for e in log} == {
        ("api_token", me, "127.0.0.1")
    }
    assert log[0]["detail"] == {"name": "t", "role": "editor"}
    assert log[2]["detail"]["role"] == "admin"
    assert log[9]["detail"] == {
        "name": "renamed",
        "kind": "openai",
        "changed": "name",
        "secrets_given": "api_key",
    }
    times = [datetime.fromisoformat(e["created_at"]) for e in log]
    assert times == sorted(times)


async def test_no_entry_holds_a_secret_in_any_form(api: httpx.AsyncClient, tenant: Tenant):
    ids = await every_kind_of_act(api, tenant)
    await ok(
        await api.put(tenant.url("/secrets/kept"), json={"value": SECRET}, headers=tenant.headers)
    )
    values = (SECRET, KEY, ids["token_value"], ids["group_token"], ids["rotated_token"])
    forms = set().union(*(forms_of(value) for value in values))
    pages = [
        await api.get("/api/v1/audit", params=params, headers=tenant.headers)
        for params in ({}, {"action": "secret.written"}, {"limit": "1"})
    ]
    texts = [page.text for page in pages]
    assert all(page.status_code == 200 for page in pages)
    assert "secret.written" in texts[1]
    assert [form for form in forms for text in texts if form in text] == []


async def count_entries(sessions: async_sessionmaker[AsyncSession], org_id: int) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.org_id == org_id)
        )
    return int(count or 0)


async def test_a_refused_act_leaves_no_entry(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    h = tenant.headers
    await ok(await api.post("/api/v1/members", json={"email": "c@example.com"}, headers=h))
    before = await count_entries(session_factory, tenant.org_id)
    again = await api.post("/api/v1/members", json={"email": "c@example.com"}, headers=h)
    assert_error(again, 409)
    last_owner = await api.delete(f"/api/v1/tokens/{await own_token_id(api, tenant)}", headers=h)
    assert_error(last_owner, 409)
    assert_error(await api.delete(tenant.url("/secrets/missing"), headers=h), 404)
    taken = await api.post(
        "/api/user", json={"current_token": "", "name": "G", "provided_id": "dup"}, headers=h
    )
    await ok(taken)
    before += 1
    dup = await api.post(
        "/api/user", json={"current_token": "", "name": "G", "provided_id": "dup"}, headers=h
    )
    assert_error(dup, 409)
    assert await count_entries(session_factory, tenant.org_id) == before


async def test_an_act_whose_entry_cannot_be_written_does_not_happen(
    tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    with pytest.raises(TypeError):
        async with session_factory.begin() as session:
            row, _ = await accounts.create_api_token(
                session=session, org_id=tenant.org_id, project_id=None, name="x", role=Role.viewer
            )
            await audit.record(
                session=session,
                org_id=tenant.org_id,
                project_id=None,
                actor=OPERATOR,
                action=AuditAction.token_created,
                target=Target("token", row.id),
                detail={"body": {"value": SECRET}},  # type: ignore[dict-item]
            )
    async with session_factory() as session:
        names = (
            await session.scalars(select(ApiToken.name).where(ApiToken.org_id == tenant.org_id))
        ).all()
    assert list(names) == ["admin"]


async def test_only_the_organisations_admins_and_owners_read_it(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    h = tenant.headers
    org_admin = await create_token(api, h, role="admin")
    for role in ("viewer", "editor"):
        token = await create_token(api, h, role=role)
        assert_error(await api.get("/api/v1/audit", headers=auth(token["token"])), 403)
    project_admin = await create_token(api, h, role="admin", project_id=tenant.project_id)
    assert_error(await api.get("/api/v1/audit", headers=auth(project_admin["token"])), 403)
    group = await ok(
        await api.post(
            "/api/user", json={"current_token": "", "name": "G", "provided_id": "g"}, headers=h
        )
    )
    as_group = auth(group["user_group"]["token"])
    assert_error(await api.get("/api/v1/audit", headers=as_group), 403)
    assert_error(await api.get("/api/v1/audit"), 401)

    by_admin = await api.get("/api/v1/audit", headers=auth(org_admin["token"]))
    assert by_admin.status_code == 200, by_admin.text
    assert len(by_admin.json()["items"]) == 5  # four tokens and the user group

    await create_token(api, other_tenant.headers, role="viewer")
    theirs = await entries(api, other_tenant)
    assert [e["action"] for e in theirs] == ["token.created"]
    assert other_tenant.project_id not in (await api.get("/api/v1/audit", headers=h)).text
    filtered = await entries(api, tenant, project_id=other_tenant.project_id)
    assert filtered == []


async def test_pages_and_filters(api: httpx.AsyncClient, tenant: Tenant):
    h = tenant.headers
    for n in range(3):
        await create_token(api, h, name=f"t{n}", role="viewer", project_id=tenant.project_id)
    await create_token(api, h, name="org", role="viewer")
    await ok(await api.put(tenant.url("/secrets/s"), json={"value": "v"}, headers=h))

    first = (await api.get("/api/v1/audit", params={"limit": 2}, headers=h)).json()
    assert [e["action"] for e in first["items"]] == ["secret.written", "token.created"]
    everything = await items_of(api, "/api/v1/audit?limit=2", h)
    assert [e["detail"].get("name") for e in everything] == [None, "org", "t2", "t1", "t0"]

    tokens = await entries(api, tenant, action="token.created", project_id=tenant.project_id)
    assert [e["detail"]["name"] for e in tokens] == ["t2", "t1", "t0"]
    newest = datetime.fromisoformat(everything[0]["created_at"])
    assert await entries(api, tenant, since=(newest + timedelta(seconds=1)).isoformat()) == []
    until = await entries(api, tenant, until=(newest - timedelta(days=1)).isoformat())
    assert until == []
    window = await entries(
        api,
        tenant,
        since=(newest - timedelta(hours=1)).isoformat(),
        until=(newest + timedelta(hours=1)).isoformat(),
    )
    assert len(window) == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"action": "token.stolen"}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2030-01-01T00:00:00"}, "since"),
        ({"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_filters_are_a_422_naming_the_field(
    api: httpx.AsyncClient, tenant: Tenant, params: dict[str, str], field: str
):
    response = await api.get("/api/v1/audit", params=params, headers=tenant.headers)
    body = assert_error(response, 422)
    assert field in str(body["error"]["details"])


async def test_the_log_cannot_be_changed_over_the_api(api: httpx.AsyncClient, tenant: Tenant):
    await create_token(api, tenant.headers, role="viewer")
    [entry] = await entries(api, tenant)
    for method in ("DELETE", "PUT", "PATCH", "POST"):
        response = await api.request(method, "/api/v1/audit", headers=tenant.headers)
        assert_error(response, 405)
        one = await api.request(method, f"/api/v1/audit/{entry['id']}", headers=tenant.headers)
        # No route serves one entry: the path is unknown whatever the method.
        assert_error(one, 404)
    assert await entries(api, tenant) == [entry]


async def test_plans_and_grants_from_the_command_line_are_the_operators(
    api: httpx.AsyncClient, tenant: Tenant, settings: Settings
):
    assert baton_cli(settings, "plan", "--org", str(tenant.org_id), "pro").returncode == 0
    granted = baton_cli(settings, "grant", "--org", str(tenant.org_id), "--actions", "7")
    assert granted.returncode == 0, granted.stderr
    assert baton_cli(settings, "plan", "--org", str(tenant.org_id), "platinum").returncode == 1
    log = await entries(api, tenant)
    org = str(tenant.org_id)
    assert [
        (e["action"], e["actor_kind"], e["actor_id"], e["target_id"], e["detail"]) for e in log
    ] == [
        ("credits.granted", "operator", None, org, {"currency": "actions", "amount": 7}),
        ("plan.set", "operator", None, org, {"plan": "pro"}),
    ]
    assert all(datetime.fromisoformat(e["created_at"]) <= datetime.now(UTC) for e in log)
