"""The web console through httpx against the real app: signing in with a token, the session
cookie, CSRF on every form, what another organisation or a user group sees, and the pages'
forms doing what the API does (an agent created, a tool call approved on the task page)."""

from __future__ import annotations

import re

import httpx
from temporalio.worker import Worker

from api.console.sessions import SESSION_SECONDS, SessionSigner, new_session
from tests.support import Tenant, create_token
from tests.support.factories import make_agent, make_tool, task_in

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(api: httpx.AsyncClient, token: str) -> httpx.Response:
    """A fresh browser's sign-in: the form, then the token posted with its CSRF field."""
    api.cookies.clear()
    form = await api.get("/sign-in")
    assert form.status_code == 200
    return await api.post("/sign-in", data={"token": token, "csrf": csrf_of(form)})


async def signed_in(api: httpx.AsyncClient, token: str) -> None:
    response = await sign_in(api, token)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/agents"


async def test_signing_in_sets_a_signed_http_only_cookie_without_the_token(
    api: httpx.AsyncClient, tenant: Tenant
):
    assert (await api.get("/")).headers["location"] == "/sign-in"
    response = await sign_in(api, tenant.token)
    assert response.status_code == 303 and response.headers["location"] == "/agents"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("baton_console=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here; https sets it
    assert tenant.token not in cookie

    page = await api.get("/agents")
    assert page.status_code == 200
    assert "<h1>Agents</h1>" in page.text and "Test project" in page.text
    assert tenant.token not in page.text

    signed_out = await api.post("/sign-out", data={"csrf": csrf_of(page)})
    assert signed_out.headers["location"] == "/sign-in"
    assert (await api.get("/agents")).headers["location"] == "/sign-in"
    over_https = await api.get("https://baton.test/sign-in")
    assert "Secure" in over_https.headers["set-cookie"]


async def test_a_bad_token_is_refused_and_a_forged_cookie_is_ignored(
    api: httpx.AsyncClient, tenant: Tenant
):
    refused = await sign_in(api, "bt_not-a-token")
    assert refused.status_code == 401 and "not valid" in refused.text
    assert (await api.get("/agents")).headers["location"] == "/sign-in"

    await signed_in(api, tenant.token)
    value = api.cookies["baton_console"]
    api.cookies.set("baton_console", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert (await api.get("/agents")).headers["location"] == "/sign-in"


async def test_every_form_needs_the_sessions_csrf_token(api: httpx.AsyncClient, tenant: Tenant):
    api.cookies.clear()
    without_session = await api.post("/sign-in", data={"token": tenant.token, "csrf": "x"})
    assert without_session.status_code == 403

    await signed_in(api, tenant.token)
    agent = {"name": "Forged", "model": "scripted:echo", "system_prompt": ""}
    assert (await api.post("/agents", data=agent)).status_code == 403
    wrong = await api.post("/agents", data={**agent, "csrf": "wrong"})
    assert wrong.status_code == 403 and "CSRF" in wrong.text
    assert wrong.headers["content-type"].startswith("text/html")
    assert (await api.post("/sign-out", data={})).status_code == 403
    listed = await api.get(tenant.url("/agents"), headers=tenant.headers)
    assert listed.json()["items"] == []


async def test_an_agent_is_created_from_the_form_and_shows_its_versions(
    api: httpx.AsyncClient, tenant: Tenant
):
    await signed_in(api, tenant.token)
    page = await api.get("/agents")
    bad = await api.post("/agents", data={"name": "", "model": "x", "csrf": csrf_of(page)})
    assert bad.status_code == 422 and "name" in bad.text

    created = await api.post(
        "/agents",
        data={
            "name": "Greeter",
            "model": "scripted:echo",
            "system_prompt": "Be kind.",
            "csrf": csrf_of(page),
        },
    )
    assert created.status_code == 303
    agent_id = created.headers["location"].removeprefix("/agents/")
    read = await api.get(tenant.url(f"/agents/{agent_id}"), headers=tenant.headers)
    assert read.json()["name"] == "Greeter" and read.json()["system_prompt"] == "Be kind."

    agent_page = await api.get(f"/agents/{agent_id}")
    assert "<h1>Greeter</h1>" in agent_page.text and "Be kind." in agent_page.text
    assert "<h2>Versions</h2>" in agent_page.text
    assert "Greeter" in (await api.get("/agents")).text


async def test_another_organisation_and_a_user_group_see_nothing_of_the_project(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    agent_id = await make_agent(api, tenant, tools=[], name="Private agent")
    group = await api.post(
        "/api/user",
        json={"current_token": "", "name": "Acme", "provided_id": "acme"},
        headers=tenant.headers,
    )
    refused = await sign_in(api, group.json()["user_group"]["token"])
    assert refused.status_code == 403 and "user group" in refused.text
    assert (await api.get("/agents")).headers["location"] == "/sign-in"

    await signed_in(api, other_tenant.token)
    assert "Private agent" not in (await api.get("/agents")).text
    hidden = await api.get(f"/agents/{agent_id}")
    assert hidden.status_code == 404 and "<h1>Not found</h1>" in hidden.text
    assert "Private agent" not in (await api.get("/tasks?tab=all")).text
    page = await api.get("/projects")
    picked = await api.post(
        "/projects", data={"project_id": tenant.project_id, "csrf": csrf_of(page)}
    )
    assert picked.status_code == 404


async def test_a_revoked_token_signs_the_console_out(api: httpx.AsyncClient, tenant: Tenant):
    created = await create_token(api, tenant.headers, role="editor")
    await signed_in(api, created["token"])
    assert (await api.get("/agents")).status_code == 200
    await api.delete(f"/api/v1/tokens/{created['id']}", headers=tenant.headers)
    assert (await api.get("/agents")).headers["location"] == "/sign-in"


async def test_a_viewer_sees_no_forms_and_cannot_post_them(api: httpx.AsyncClient, tenant: Tenant):
    viewer = await create_token(api, tenant.headers, role="viewer")
    await signed_in(api, viewer["token"])
    page = await api.get("/agents")
    assert "New agent" not in page.text
    form = {"name": "Nope", "model": "scripted:echo", "csrf": csrf_of(page)}
    assert (await api.post("/agents", data=form)).status_code == 403
    assert 'action="/chat"' not in (await api.get("/chat")).text


async def test_a_tool_call_is_approved_from_the_task_page(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent_id = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    await signed_in(api, tenant.token)
    chat = await api.get(f"/chat?agent_id={agent_id}")
    started = await api.post(
        "/chat",
        data={
            "agent_id": agent_id,
            "message": 'call echo_tool {"text": "hi"}',
            "csrf": csrf_of(chat),
        },
    )
    assert started.status_code == 303, started.text
    task_id = started.headers["location"].removeprefix("/tasks/")
    waiting = await task_in(api, tenant, task_id, {"waiting-approval"})
    [pending] = waiting["pending_approvals"]

    inbox = await api.get("/tasks?tab=approvals")
    assert f'href="/tasks/{task_id}"' in inbox.text
    page = await api.get(f"/tasks/{task_id}")
    assert "waiting-approval" in page.text and "echo_tool" in page.text
    assert waiting["temporal_ui_url"].replace("&", "&amp;") in page.text
    action = f"/tasks/{task_id}/approvals/{pending['call_id']}"
    assert f'action="{action}"' in page.text

    assert (await api.post(action, data={"decision": "approve"})).status_code == 403
    approved = await api.post(action, data={"decision": "approve", "csrf": csrf_of(page)})
    assert approved.status_code == 303 and approved.headers["location"] == f"/tasks/{task_id}"
    done = await task_in(api, tenant, task_id, {"completed", "failed"})
    assert done["status"] == "completed", done
    assert "tool got hi" in (await api.get(f"/tasks/{task_id}")).text
    assert "Approvals" in (await api.get("/tasks?tab=approvals")).text
    assert f"/tasks/{task_id}" not in (await api.get("/tasks?tab=approvals")).text
    assert f"/tasks/{task_id}" in (await api.get("/tasks?tab=all&status=completed")).text

    await signed_in(api, other_tenant.token)
    assert (await api.get(f"/tasks/{task_id}")).status_code == 404


async def test_the_console_stays_out_of_the_openapi_schema(api: httpx.AsyncClient):
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert all(path.startswith(("/api", "/health")) for path in paths), sorted(paths)
    assert (await api.get("/static/console.css")).status_code == 200


def test_a_session_expires_and_is_bound_to_the_secret_key():
    signer = SessionSigner("one key")
    state = new_session(now=1000).with_project("p")
    value = signer.dump(state)
    assert signer.load(value, now=1001) == state
    assert signer.load(value, now=1000 + SESSION_SECONDS) is None
    assert SessionSigner("another key").load(value, now=1001) is None


async def test_an_organisation_token_picks_its_project_after_signing_in(
    api: httpx.AsyncClient, tenant: Tenant
):
    second = await api.post("/api/v1/projects", json={"name": "Second"}, headers=tenant.headers)
    assert second.status_code == 201, second.text
    await make_agent(api, tenant, tools=[], name="In the first project")
    response = await sign_in(api, tenant.token)
    assert response.headers["location"] == "/projects"
    assert (await api.get("/agents")).headers["location"] == "/projects"

    page = await api.get("/projects")
    assert "Test project" in page.text and "Second" in page.text
    picked = await api.post(
        "/projects", data={"project_id": second.json()["id"], "csrf": csrf_of(page)}
    )
    assert picked.headers["location"] == "/agents"
    agents = await api.get("/agents")
    assert "Project: Second" in agents.text and "In the first project" not in agents.text
