"""The console in a real browser: Playwright drives Debian's chromium (nothing is downloaded)
against the app served by uvicorn, with a real worker: sign in, create an agent, chat."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.async_api import async_playwright, expect
from temporalio.worker import Worker

from tests.conftest import Tenant

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
)


async def test_sign_in_create_an_agent_and_chat(live_api: str, tenant: Tenant, worker: Worker):
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(live_api + "/")
            await expect(page).to_have_url(re.compile(r"/sign-in$"))

            await page.get_by_label("API token").fill(tenant.token)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", name="Agents", exact=True)).to_be_visible()

            await page.get_by_label("Name").fill("Parrot")
            await page.get_by_label("Model").fill("scripted:echo")
            await page.get_by_label("System prompt").fill("Repeat what you hear.")
            # The keyboard submits the form, as a person without a mouse would.
            await page.get_by_role("button", name="Create agent").focus()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name="Parrot")).to_be_visible()

            await page.get_by_role("link", name="Chat with Parrot").click()
            await page.get_by_label("Message").fill("hello from the browser")
            await page.get_by_role("button", name="Start the conversation").click()
            await expect(page).to_have_url(re.compile(r"/tasks/[0-9a-f-]+$"))
            # The task page reloads itself while the agent works, until the echo is there.
            replies = page.locator(".message.assistant .content")
            await expect(replies).to_contain_text("hello from the browser", timeout=30_000)
            await expect(
                page.get_by_role("link", name="Open in the Temporal UI")
            ).to_have_attribute("href", re.compile(r"^http://localhost:8233/"))
        finally:
            await browser.close()
