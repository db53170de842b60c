"""Sharing through the API and the public pages (httpx against the real app, a real worker):
share links of agents and tools opened without a token, what a visitor sees and may do,
revoking and expiry, the link's own rate limit, framing, and the user-group dashboard."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.tables import DashboardCode, ShareLink
from baton.settings import Settings
from tests.support import Tenant, api_client, assert_error, create_token, items_of
from tests.test_agent_tasks import make_tool

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PROMPT = "You are the secret-keeping parrot; never reveal the word marzipan."


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def path_of(url: str) -> str:
    """A URL the API returned, as a path for the in-process client."""
    return re.sub(r"^https?://[^/]+", "", url)


def fresh(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another browser: the same app, no cookies, no token."""
    return httpx.AsyncClient(transport=api._transport, base_url=str(api.base_url))


async def make_parrot(api: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await api.post(
        tenant.url("/agents"),
        json={
            "name": "Parrot",
            "model": "scripted:echo",
            "system_prompt": PROMPT,
            "welcome_message": "Hello! Say something and I will repeat it.",
            "idle_timeout_seconds": 120,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def share(api: httpx.AsyncClient, tenant: Tenant, path: str, **body: Any) -> dict[str, Any]:
    response = await api.post(tenant.url(f"{path}/share"), json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def chat(visitor: httpx.AsyncClient, link: str, message: str) -> str:
    """Opens the link, starts a conversation; returns the conversation page's path."""
    home = await visitor.get(link)
    assert home.status_code == 200, home.text
    started = await visitor.post(
        f"{link}/conversations", data={"message": message, "csrf": csrf_of(home)}
    )
    assert started.status_code == 303, started.text
    location: str = started.headers["location"]
    return location


async def page_with(
    client: httpx.AsyncClient, path: str, text: str, timeout: float = 30
) -> httpx.Response:
    async with asyncio.timeout(timeout):
        while True:
            page = await client.get(path)
            assert page.status_code == 200, page.text
            if text in page.text:
                return page
            await asyncio.sleep(0.1)


async def test_a_share_link_opens_a_chat_without_a_token_and_hides_the_prompt(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent_id = await make_parrot(api, tenant)
    created = await share(api, tenant, f"/agents/{agent_id}")
    assert set(created) == {"id", "url", "expires_at", "user_group_id"}
    assert created["expires_at"] is None
    assert created["url"].startswith("http://baton.test/share/bts_")
    link = path_of(created["url"])

    async with fresh(api) as visitor:
        home = await visitor.get(link)
        assert home.status_code == 200
        assert "Parrot" in home.text and "I will repeat it" in home.text
        assert "marzipan" not in home.text and "scripted:echo" not in home.text
        assert home.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert "baton_visitor=" in home.headers["set-cookie"]
        assert "HttpOnly" in home.headers["set-cookie"]

        conversation = await chat(visitor, link, "polly wants a cracker")
        assert re.fullmatch(rf"{link}/conversations/[0-9a-f-]+", conversation)
        page = await page_with(visitor, conversation, "You said: polly wants a cracker")
        assert "marzipan" not in page.text

        reply = await visitor.post(
            f"{conversation}/messages", data={"message": "again", "csrf": csrf_of(page)}
        )
        assert reply.status_code == 303
        await page_with(visitor, conversation, "You said: again")
        assert conversation.rsplit("/", 1)[1] in (await visitor.get(link)).text

    task_id = conversation.rsplit("/", 1)[1]
    task = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
    assert task["source"] == f"share:{created['id']}"
    assert task["agent_id"] == agent_id
    listed = await items_of(api, tenant.url("/tasks"), tenant.headers)
    assert {t["id"]: t["source"] for t in listed}[task_id] == f"share:{created['id']}"
    # Billed to the owner like any task: its model call is in the task's cost.
    assert task["usage"]["input_tokens"] > 0


async def test_a_visitor_sees_only_the_conversations_they_started(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent_id = await make_parrot(api, tenant)
    link = path_of((await share(api, tenant, f"/agents/{agent_id}"))["url"])
    async with fresh(api) as alice, fresh(api) as bob:
        alices = await chat(alice, link, "alice's secret plan")
        bobs_home = await bob.get(link)
        assert alices.rsplit("/", 1)[1] not in bobs_home.text
        assert (await bob.get(alices)).status_code == 404
        refused = await bob.post(
            f"{alices}/messages", data={"message": "hijack", "csrf": csrf_of(bobs_home)}
        )
        assert refused.status_code == 404
        # A conversation started in the console is not reachable through the link either.
        other = await api.post(
            tenant.url(f"/agents/{agent_id}/tasks"),
            json={"message": "internal"},
            headers=tenant.headers,
        )
        assert (await alice.get(f"{link}/conversations/{other.json()['id']}")).status_code == 404


async def test_forms_of_a_share_page_need_the_visitors_csrf_token(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent_id = await make_parrot(api, tenant)
    link = path_of((await share(api, tenant, f"/agents/{agent_id}"))["url"])
    async with fresh(api) as visitor:
        no_cookie = await visitor.post(f"{link}/conversations", data={"message": "hi"})
        assert no_cookie.status_code == 403
        await visitor.get(link)
        wrong = await visitor.post(
            f"{link}/conversations", data={"message": "hi", "csrf": "forged"}
        )
        assert wrong.status_code == 403
    tasks = await items_of(api, tenant.url("/tasks"), tenant.headers)
    assert tasks == []


async def test_revoking_a_link_stops_it_at_once_and_both_acts_are_audited(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent_id = await make_parrot(api, tenant)
    created = await share(api, tenant, f"/agents/{agent_id}")
    link = path_of(created["url"])
    async with fresh(api) as visitor:
        home = await visitor.get(link)
        assert home.status_code == 200
        listed = await items_of(api, tenant.url(f"/agents/{agent_id}/share"), tenant.headers)
        assert [s["id"] for s in listed] == [created["id"]]
        assert listed[0]["revoked_at"] is None
        assert all("bts_" not in str(value) for value in listed[0].values())

        revoked = await api.delete(
            tenant.url(f"/agents/{agent_id}/share/{created['id']}"), headers=tenant.headers
        )
        assert revoked.status_code == 204
        gone = await visitor.get(link)
        assert gone.status_code == 410 and "no longer works" in gone.text
        late = await visitor.post(
            f"{link}/conversations", data={"message": "hi", "csrf": csrf_of(home)}
        )
        assert late.status_code == 410
        assert (await visitor.get("/share/bts_never-issued")).status_code == 404

    listed = await items_of(api, tenant.url(f"/agents/{agent_id}/share"), tenant.headers)
    assert listed[0]["revoked_at"] is not None
    # Revoking it again answers the same and changes nothing: one act, one audit entry.
    again = await api.delete(
        tenant.url(f"/agents/{agent_id}/share/{created['id']}"), headers=tenant.headers
    )
    assert again.status_code == 204
    entries = (await api.get("/api/v1/audit", headers=tenant.headers)).json()["items"]
    sharing = [(e["action"], e["target_type"], e["target_id"]) for e in entries]
    assert sharing.count(("sharing.enabled", "agent", agent_id)) == 1
    assert sharing.count(("sharing.disabled", "agent", agent_id)) == 1


async def test_a_link_expires(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: async_sessionmaker[AsyncSession]
):
    agent_id = await make_parrot(api, tenant)
    before = datetime.now(UTC)
    created = await share(api, tenant, f"/agents/{agent_id}", expires_in_seconds=3600)
    after = datetime.now(UTC)
    # An hour from when the server made it, however long the call took (to the second: a
    # stored time may lose its fraction).
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert before + timedelta(hours=1, seconds=-1) <= expires_at <= after + timedelta(hours=1)
    later = datetime.now(UTC) + timedelta(days=2)
    at = await share(api, tenant, f"/agents/{agent_id}", expires_at=later.isoformat())
    assert datetime.fromisoformat(at["expires_at"]) == later

    async with session_factory.begin() as session:
        await session.execute(
            update(ShareLink)
            .where(ShareLink.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    async with fresh(api) as visitor:
        assert (await visitor.get(path_of(created["url"]))).status_code == 410
        assert (await visitor.get(path_of(at["url"]))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in_seconds": 5},
        {"expires_in_seconds": 3600, "expires_at": "2099-01-01T00:00:00Z"},
        {"expires_at": "2000-01-01T00:00:00Z"},
        {"expires_at": "2099-01-01T00:00:00"},
        {"unknown": 1},
    ],
)
async def test_a_bad_share_request_is_a_422(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
):
    agent_id = await make_parrot(api, tenant)
    response = await api.post(
        tenant.url(f"/agents/{agent_id}/share"), json=body, headers=tenant.headers
    )
    assert_error(response, 422)


async def test_only_editors_of_the_project_share_and_another_tenant_finds_nothing(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    agent_id = await make_parrot(api, tenant)
    tool_id = await make_tool(api, tenant)
    created = await share(api, tenant, f"/agents/{agent_id}")
    viewer = await create_token(api, tenant.headers, role="viewer")
    as_viewer = {"Authorization": f"Token {viewer['token']}"}
    for method, path in (
        ("POST", f"/agents/{agent_id}/share"),
        ("GET", f"/agents/{agent_id}/share"),
        ("DELETE", f"/agents/{agent_id}/share/{created['id']}"),
        ("POST", f"/tools/{tool_id}/share"),
    ):
        kwargs: dict[str, Any] = {"json": {}} if method == "POST" else {}
        response = await api.request(method, tenant.url(path), headers=as_viewer, **kwargs)
        assert_error(response, 403)
        # Another organisation's token: the project itself is not found.
        attacker = await api.request(
            method, tenant.url(path), headers=other_tenant.headers, **kwargs
        )
        assert_error(attacker, 404)
    # A share id of one agent does not revoke through another agent's path.
    other_agent = await make_parrot(api, tenant)
    response = await api.delete(
        tenant.url(f"/agents/{other_agent}/share/{created['id']}"), headers=tenant.headers
    )
    assert_error(response, 404)


async def test_a_shared_tool_has_a_run_form_that_shows_the_result_not_the_steps(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool_id = await make_tool(api, tenant)
    created = await share(api, tenant, f"/tools/{tool_id}")
    link = path_of(created["url"])
    async with fresh(api) as visitor:
        form = await visitor.get(link)
        assert form.status_code == 200
        assert "Echo tool" in form.text and 'name="text"' in form.text
        assert "{{ params.text }}" not in form.text and "template" not in form.text
        ran = await visitor.post(
            f"{link}/runs", data={"text": "from the link", "csrf": csrf_of(form)}
        )
        assert ran.status_code == 303, ran.text
        result = await page_with(visitor, ran.headers["location"], "tool got from the link")
        assert "{{ params.text }}" not in result.text
        async with fresh(api) as stranger:
            assert (await stranger.get(ran.headers["location"])).status_code == 404
    run_id = ran.headers["location"].rsplit("/", 1)[1]
    run = (await api.get(tenant.url(f"/tool-runs/{run_id}"), headers=tenant.headers)).json()
    assert run["source"] == f"share:{created['id']}"
    assert run["cost"]["actions"] >= 1


@pytest.fixture
async def strict_api(
    settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a share link allowed two starts or messages a minute."""
    limited = settings.model_copy(update={"share_link_requests_per_minute": 2})
    async with api_client(limited, temporal_env.client) as client:
        yield client


async def test_a_link_is_rate_limited_and_messages_are_bounded(
    strict_api: httpx.AsyncClient, tenant: Tenant
):
    api = strict_api
    agent_id = await make_parrot(api, tenant)
    link = path_of((await share(api, tenant, f"/agents/{agent_id}"))["url"])
    async with fresh(api) as visitor:
        csrf = csrf_of(await visitor.get(link))
        too_long = await visitor.post(
            f"{link}/conversations", data={"message": "x" * 100_001, "csrf": csrf}
        )
        assert too_long.status_code == 422
        for _ in range(2):
            started = await visitor.post(
                f"{link}/conversations", data={"message": "hi", "csrf": csrf}
            )
            assert started.status_code == 303
        refused = await visitor.post(f"{link}/conversations", data={"message": "hi", "csrf": csrf})
        assert refused.status_code == 429 and "at most 2 a minute" in refused.text
    tasks = await items_of(api, tenant.url("/tasks"), tenant.headers)
    assert len(tasks) == 2


async def test_embed_pages_may_be_framed_by_other_sites_and_the_console_may_not(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent_id = await make_parrot(api, tenant)
    link = path_of((await share(api, tenant, f"/agents/{agent_id}"))["url"])
    token = link.rsplit("/", 1)[1]
    async with fresh(api) as visitor:
        embed = await visitor.get(f"/embed/{token}?color=%23aa0000&prompts=Hi|Help&hide_steps=1")
        assert embed.status_code == 200
        assert embed.headers["content-security-policy"] == "frame-ancestors *"
        assert "x-frame-options" not in embed.headers
        assert "--accent: #aa0000" in embed.text
        assert 'value="Hi"' in embed.text and 'value="Help"' in embed.text
        # The options travel on to the next page.
        assert f"/embed/{token}/conversations?color=%23aa0000" in embed.text
        bad_colour = await visitor.get(f"/embed/{token}?color=red;x:url(evil)")
        assert "evil" not in bad_colour.text
        widget = await visitor.get("/embed/chat.js")
        assert widget.status_code == 200
        assert widget.headers["content-type"].startswith("text/javascript")
        assert "data-share" in widget.text
    sign_in = await api.get("/sign-in")
    assert sign_in.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert sign_in.headers["x-frame-options"] == "DENY"


# The user-group dashboard


async def user_group(api: httpx.AsyncClient, tenant: Tenant, provided_id: str) -> str:
    response = await api.post(
        "/api/user",
        json={"current_token": "", "name": f"Customer {provided_id}", "provided_id": provided_id},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["user_group"]["token"]
    return token


async def open_dashboard(api: httpx.AsyncClient, tenant: Tenant, group_token: str) -> str:
    """The embedding product's server asks for a URL; returns its path."""
    response = await api.post(
        tenant.url("/dashboard-sessions"), headers={"Authorization": f"Token {group_token}"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"url", "expires_at"}
    assert group_token not in body["url"]
    return path_of(body["url"])


async def test_each_user_group_sees_only_its_own_tasks_on_its_dashboard(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent_id = await make_parrot(api, tenant)
    acme, globex = await user_group(api, tenant, "acme"), await user_group(api, tenant, "globex")
    for group, message in (("acme", "acme's order 1"), ("globex", "globex's invoice")):
        started = await api.post(
            tenant.url(f"/agents/{agent_id}/tasks"),
            json={"message": message, "user_group": group},
            headers=tenant.headers,
        )
        assert started.status_code == 201
    shared = await share(api, tenant, f"/agents/{agent_id}", user_group="acme")
    assert shared["url"] is None and shared["user_group_id"]
    clerk = await api.post(
        tenant.url("/agents"),
        json={"name": "Clerk", "model": "scripted:echo"},
        headers=tenant.headers,
    )
    await share(api, tenant, f"/agents/{clerk.json()['id']}", user_group="globex")

    async with fresh(api) as acme_frame, fresh(api) as globex_frame:
        entered = await acme_frame.get(await open_dashboard(api, tenant, acme))
        assert entered.status_code == 303 and entered.headers["location"] == "/dashboard"
        assert "baton_dashboard=" in entered.headers["set-cookie"]
        await globex_frame.get(await open_dashboard(api, tenant, globex))

        acme_page = await acme_frame.get("/dashboard")
        assert acme_page.status_code == 200
        assert acme_page.headers["content-security-policy"] == "frame-ancestors *"
        globex_page = await globex_frame.get("/dashboard")
        acme_tasks = set(re.findall(r"/dashboard/tasks/([0-9a-f-]+)", acme_page.text))
        globex_tasks = set(re.findall(r"/dashboard/tasks/([0-9a-f-]+)", globex_page.text))
        assert len(acme_tasks) == 1 and len(globex_tasks) == 1
        assert (await globex_frame.get(f"/dashboard/tasks/{acme_tasks.pop()}")).status_code == 404

        # The agent shared with acme is offered to acme only, and chats.
        assert "Parrot" in acme_page.text and "Parrot" not in globex_page.text
        assert "Clerk" in globex_page.text and "Clerk" not in acme_page.text
        refused = await globex_frame.post(
            "/dashboard/chat",
            data={"share_id": shared["id"], "message": "me too", "csrf": csrf_of(globex_page)},
        )
        assert refused.status_code == 404
        started = await acme_frame.post(
            "/dashboard/chat",
            data={
                "share_id": shared["id"],
                "message": "where is my parcel",
                "csrf": csrf_of(acme_page),
            },
        )
        assert started.status_code == 303, started.text
        await page_with(acme_frame, started.headers["location"], "You said: where is my parcel")
    task_id = started.headers["location"].rsplit("/", 1)[1]
    listed = await api.get(tenant.url("/tasks"), headers={"Authorization": f"Token {acme}"})
    assert task_id in {t["id"] for t in listed.json()["items"]}
    task = (await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)).json()
    assert task["source"] == f"share:{shared['id']}"


async def test_a_dashboard_code_works_once_and_not_after_it_expired(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    acme = await user_group(api, tenant, "acme")
    url = await open_dashboard(api, tenant, acme)
    async with fresh(api) as frame:
        assert (await frame.get(url)).status_code == 303
    async with fresh(api) as replay:
        again = await replay.get(url)
        assert again.status_code == 410
        assert (await replay.get("/dashboard")).status_code == 401

    late = await open_dashboard(api, tenant, acme)
    async with session_factory.begin() as session:
        await session.execute(
            update(DashboardCode).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    async with fresh(api) as frame:
        assert (await frame.get(late)).status_code == 410
        assert (await frame.get("/dashboard/enter?code=btd_made-up")).status_code == 410

    # An API token is not a user group's; another organisation's project is not found.
    assert_error(await api.post(tenant.url("/dashboard-sessions"), headers=tenant.headers), 403)
    attacker = await api.post(
        other_tenant.url("/dashboard-sessions"), headers={"Authorization": f"Token {acme}"}
    )
    assert_error(attacker, 404)


async def test_a_user_groups_dashboard_is_rate_limited_too(
    strict_api: httpx.AsyncClient, tenant: Tenant
):
    api = strict_api
    agent_id = await make_parrot(api, tenant)
    acme = await user_group(api, tenant, "acme")
    shared = await share(api, tenant, f"/agents/{agent_id}", user_group="acme")
    async with fresh(api) as frame:
        await frame.get(await open_dashboard(api, tenant, acme))
        csrf = csrf_of(await frame.get("/dashboard"))
        chat = {"share_id": shared["id"], "message": "hi", "csrf": csrf}
        assert [(await frame.post("/dashboard/chat", data=chat)).status_code for _ in range(3)] == [
            303,
            303,
            429,
        ]


async def test_the_sites_that_may_frame_embed_pages_are_a_setting(
    settings: Settings, temporal_env: WorkflowEnvironment, tenant: Tenant
):
    only_shop = settings.model_copy(update={"embed_frame_ancestors": "https://shop.example.com"})
    async with api_client(only_shop, temporal_env.client) as api:
        agent_id = await make_parrot(api, tenant)
        token = path_of((await share(api, tenant, f"/agents/{agent_id}"))["url"]).rsplit("/")[-1]
        embed = await api.get(f"/embed/{token}")
        assert embed.headers["content-security-policy"] == (
            "frame-ancestors https://shop.example.com"
        )
        assert (await api.get("/dashboard")).headers["content-security-policy"] == (
            "frame-ancestors https://shop.example.com"
        )
        assert (await api.get(f"/share/{token}")).headers["x-frame-options"] == "DENY"
    with pytest.raises(ValueError):
        Settings(embed_frame_ancestors="*; script-src *")
