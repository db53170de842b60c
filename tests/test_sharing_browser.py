"""Sharing in a real browser: Playwright drives Debian's chromium (nothing is downloaded)
against the app served by uvicorn, with a real worker. A share link opened in a fresh browser
without a token, the chat widget on a plain page of another origin (a second local port),
and the user-group dashboard in an iframe showing only that group's tasks."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from temporalio.worker import Worker

from tests.support import Tenant

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
)


@dataclass
class HostSite:
    """Another origin: a plain site that embeds Baton, its pages set by the test."""

    base: str
    pages: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def host_site() -> AsyncIterator[HostSite]:
    site = HostSite(base="")

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in site.pages:
            return HTMLResponse("not here", status_code=404)
        return HTMLResponse(site.pages[name])

    app = Starlette(routes=[Route("/{name}", serve)])
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    site.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield site
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def parrot(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await client.post(
        tenant.url("/agents"),
        json={
            "name": "Parrot",
            "model": "scripted:echo",
            "system_prompt": "Never say marzipan.",
            "welcome_message": "Hello from the parrot.",
            "idle_timeout_seconds": 120,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    agent_id: str = response.json()["id"]
    return agent_id


async def share_url(client: httpx.AsyncClient, tenant: Tenant, agent_id: str) -> str:
    response = await client.post(
        tenant.url(f"/agents/{agent_id}/share"), json={}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


async def test_a_share_link_works_in_a_fresh_browser_without_a_token(
    live_api: str, tenant: Tenant, worker: Worker, browser: Browser
):
    async with httpx.AsyncClient(base_url=live_api) as client:
        url = await share_url(client, tenant, await parrot(client, tenant))
    assert url.startswith(live_api + "/share/")
    context = await browser.new_context()  # no cookie, no token
    page = await context.new_page()
    await page.goto(url)
    await expect(page.get_by_role("heading", name="Parrot")).to_be_visible()
    await expect(page.get_by_text("Hello from the parrot.")).to_be_visible()
    await expect(page.get_by_text("marzipan")).to_have_count(0)
    await page.get_by_label("Message").fill("hello from a stranger")
    # The keyboard sends the form, as a person without a mouse would.
    await page.get_by_role("button", name="Start the conversation").focus()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/conversations/[0-9a-f-]+$"))
    replies = page.locator(".message.assistant .content")
    await expect(replies.last).to_contain_text("You said: hello from a stranger", timeout=30_000)

    await page.get_by_label("Message").fill("and once more")
    await page.get_by_role("button", name="Send").click()
    await expect(replies.last).to_contain_text("You said: and once more", timeout=30_000)
    await context.close()


async def test_the_chat_widget_on_a_page_of_another_origin_opens_and_chats(
    live_api: str, tenant: Tenant, worker: Worker, browser: Browser, host_site: HostSite
):
    async with httpx.AsyncClient(base_url=live_api) as client:
        url = await share_url(client, tenant, await parrot(client, tenant))
    host_site.pages["shop"] = f"""<!doctype html>
<html lang="en"><head><title>A shop</title></head>
<body><h1>A shop that is not Baton</h1>
<script src="{live_api}/embed/chat.js" data-share="{url}" data-color="#0a7d53"
        data-prompts="Where is my parcel?|Opening hours" data-hide-steps="true"></script>
</body></html>"""
    assert host_site.base != live_api
    page = await (await browser.new_context()).new_page()
    await page.goto(host_site.base + "/shop")
    bubble = page.get_by_role("button", name="Open chat")
    await expect(bubble).to_be_visible()
    await bubble.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Close chat")).to_have_attribute(
        "aria-expanded", "true"
    )
    frame = page.frame_locator('iframe[title="Chat"]')
    await expect(frame.get_by_role("heading", name="Parrot")).to_be_visible()
    await frame.get_by_role("button", name="Where is my parcel?").click()
    replies = frame.locator(".message.assistant .content")
    await expect(replies.last).to_contain_text("You said: Where is my parcel?", timeout=30_000)
    # The colour the embedder chose is the page's accent.
    accent = await frame.locator("body").evaluate(
        "body => getComputedStyle(body).getPropertyValue('--accent').trim()"
    )
    assert accent == "#0a7d53"


async def test_the_user_group_dashboard_in_an_iframe_shows_only_that_groups_tasks(
    live_api: str, tenant: Tenant, worker: Worker, browser: Browser, host_site: HostSite
):
    async with httpx.AsyncClient(base_url=live_api) as client:
        agent_id = await parrot(client, tenant)
        tokens = {}
        for group in ("acme", "globex"):
            created = await client.post(
                "/api/user",
                json={"current_token": "", "name": f"Customer {group}", "provided_id": group},
                headers=tenant.headers,
            )
            tokens[group] = created.json()["user_group"]["token"]
            started = await client.post(
                tenant.url(f"/agents/{agent_id}/tasks"),
                json={"message": f"{group} asks about its order", "user_group": group},
                headers=tenant.headers,
            )
            assert started.status_code == 201
        shared = await client.post(
            tenant.url(f"/agents/{agent_id}/share"),
            json={"user_group": "acme"},
            headers=tenant.headers,
        )
        assert shared.status_code == 201
        # The embedding product's server: the group's token in a header, never in a URL.
        session = await client.post(
            tenant.url("/dashboard-sessions"),
            headers={"Authorization": f"Token {tokens['acme']}"},
        )
        dashboard_url = session.json()["url"]
    host_site.pages["account"] = f"""<!doctype html>
<html lang="en"><head><title>Your account</title></head>
<body><h1>Your account</h1>
<iframe src="{dashboard_url}" title="Your Baton dashboard" width="800" height="600"></iframe>
</body></html>"""
    page = await (await browser.new_context()).new_page()
    await page.goto(host_site.base + "/account")
    frame = page.frame_locator('iframe[title="Your Baton dashboard"]')
    await expect(frame.get_by_role("heading", name="Customer acme")).to_be_visible()
    rows = frame.locator("tr.task")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link").click()
    await expect(frame.get_by_text("acme asks about its order", exact=True)).to_be_visible()
    await expect(frame.get_by_text("globex asks about its order")).to_have_count(0)

    await frame.get_by_role("link", name="All your tasks").click()
    await frame.get_by_label("Agent").select_option(label="Parrot")
    await frame.get_by_label("Message").fill("a new question")
    await frame.get_by_role("button", name="Start the conversation").click()
    replies = frame.locator(".message.assistant .content")
    await expect(replies.last).to_contain_text("You said: a new question", timeout=30_000)
    await frame.get_by_role("link", name="All your tasks").click()
    await expect(rows).to_have_count(2)

    # The code was spent: opening the same URL again is refused.
    again = await (await browser.new_context()).new_page()
    response = await again.goto(dashboard_url)
    assert response is not None and response.status == 410
