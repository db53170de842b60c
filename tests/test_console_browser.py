"""The console in a real browser: Playwright drives Debian's chromium (nothing is downloaded)
against the app served by uvicorn, with a real worker. One browser for the module, a fresh
context (no cookies) per test: sign in, create an agent and give it a tool that needs
approval, chat with it (the answer streams in, the call is approved inline), and approve
several tasks at once in the inbox."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from temporalio.worker import Worker

from tests.support import Tenant
from tests.test_agent_tasks import FINAL, make_agent, make_tool, start, wait_for
from tests.test_console_inbox import waiting_on

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def sign_in(page: Page, live_api: str, tenant: Tenant) -> None:
    await page.goto(live_api + "/")
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.get_by_label("API token").fill(tenant.token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()


async def test_create_an_agent_chat_and_approve_its_tool_call_inline(
    page: Page, live_api: str, api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    await make_tool(api, tenant)
    await sign_in(page, live_api, tenant)

    await page.get_by_label("Name").fill("Parrot")
    await page.get_by_label("Model").fill("scripted:tools")
    await page.get_by_label("System prompt").fill("Repeat what you hear.")
    # The keyboard submits the form, as a person without a mouse would.
    await page.get_by_role("button", name="Create agent").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Parrot")).to_be_visible()

    await page.get_by_role("link", name="Edit Parrot").click()
    await page.get_by_label("Echo tool").select_option("required")
    await page.get_by_role("button", name="Save as a new version").click()
    await expect(page.get_by_text("approval: required")).to_be_visible()

    await page.get_by_role("link", name="Chat with Parrot").click()
    await page.get_by_label("Message").fill('call echo_tool {"text": "from the browser"}')
    await page.get_by_role("button", name="Start the conversation").click()
    await expect(page).to_have_url(re.compile(r"/tasks/[0-9a-f-]+$"))
    # The stream brings the call; waiting for approval, the page shows it folded open.
    fold = page.locator("details.tool-call[open]")
    await expect(fold).to_contain_text("waiting for approval", timeout=30_000)
    await expect(fold).to_contain_text('"text": "from the browser"')
    await fold.get_by_role("button", name="Approve").click()

    await expect(page.locator("#status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("details.tool-call .output")).to_have_text(
        "tool got from the browser"
    )
    await expect(page.locator(".message.assistant .content").last).to_contain_text(
        "echo_tool: tool got from the browser"
    )
    await expect(page.get_by_role("link", name="Open in the Temporal UI")).to_have_attribute(
        "href", re.compile(r"^http://localhost:8233/")
    )


async def test_an_answer_streams_into_the_open_page(
    page: Page, live_api: str, api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await make_agent(
        api, tenant, tools=[], model="scripted:echo", name="Talker", idle_timeout_seconds=60
    )
    task_id = await start(api, tenant, agent, "first")
    await wait_for(api, tenant, task_id, {"idle"})
    await sign_in(page, live_api, tenant)
    await page.goto(f"{live_api}/tasks/{task_id}")
    await expect(page.locator("#status")).to_have_text("idle")
    await page.evaluate("window.sameDocument = true")

    sent = await api.post(
        tenant.url(f"/tasks/{task_id}/messages"),
        json={"message": "second, streamed"},
        headers=tenant.headers,
    )
    assert sent.status_code == 202, sent.text
    await expect(page.locator(".message.assistant .content").last).to_contain_text(
        "You said: second, streamed", timeout=30_000
    )
    await expect(page.locator("#status")).to_have_text("idle")
    # No reload brought it: the page is the one the script was set on.
    assert await page.evaluate("window.sameDocument") is True


async def test_approve_several_tasks_at_once_in_the_inbox(
    page: Page, live_api: str, api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool, "approval": "required"}])
    tasks = [await start(api, tenant, agent, f'call echo_tool {{"text": "{t}"}}') for t in "ab"]
    for task_id in tasks:
        await waiting_on(api, tenant, task_id, 1)

    await sign_in(page, live_api, tenant)
    await page.get_by_role("link", name="Tasks").click()
    await expect(page.get_by_role("link", name="Approvals")).to_have_attribute(
        "aria-current", "page"
    )
    for task_id in tasks:
        # Space ticks a focused checkbox, as with the keyboard.
        await page.get_by_label(f"Pick task {task_id[:8]}").focus()
        await page.keyboard.press("Space")
    await page.get_by_role("button", name="Approve picked").click()
    await expect(page.get_by_role("status")).to_have_text("Approved the tool call of 2 tasks.")
    for task_id in tasks:
        assert (await wait_for(api, tenant, task_id, FINAL))["status"] == "completed"
