"""A worker process dies (SIGKILL) in the middle of a knowledge source's sync, while it
fetches a sitemap's second page: another worker takes the sync over where the first one
stopped, and every page's rows are there once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.site_server import FakeSite
from tests.faults.conftest import FaultStack
from tests.processes import kill, wait_until
from tests.support import Tenant

# Killing and restarting processes, on timers: under xdist, while no other test runs.
pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.alone]
PAGES = ["/a", "/b", "/c", "/d"]


@pytest.fixture(scope="module")
def site() -> Iterator[FakeSite]:
    server = FakeSite().start()
    yield server
    server.stop()


async def source_when_synced(
    stack: FaultStack, tenant: Tenant, url: str, timeout: float
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            source: dict[str, Any] = (await stack.client.get(url)).json()
            if source["last_outcome"] in ("succeeded", "failed"):
                return source
            await asyncio.sleep(0.2)


async def test_a_worker_killed_mid_sync_is_replaced_and_no_row_is_duplicated(
    stack: FaultStack, tenant: Tenant, site: FakeSite
):
    site.reset()
    for page in PAGES:
        site.page(page, f"the text of page {page[1:]}")
    site.sitemap("/sitemap.xml", PAGES)
    site.slow["/b"] = 60
    created = await stack.client.post(tenant.url("/knowledge/sets"), json={"name": "crash"})
    assert created.status_code == 201, created.text
    sources = tenant.url(f"/knowledge/sets/{created.json()['id']}/sources")
    first = stack.start_worker()
    source = await stack.client.post(
        sources, json={"kind": "sitemap", "url": site.url("/sitemap.xml")}
    )
    assert source.status_code == 201, source.text
    await wait_until(lambda: "/b" in site.asked, 60, "the fetch of the second page")
    await asyncio.sleep(1.5)  # a heartbeat carries "page /a is written"

    kill(first)
    site.slow.clear()
    stack.start_worker()
    synced = await source_when_synced(stack, tenant, f"{sources}/{source.json()['id']}", timeout=90)

    assert synced["last_outcome"] == "succeeded", (synced, stack.logs())
    assert synced["rows_added"] == 4
    rows = (
        await stack.client.get(tenant.url(f"/knowledge/sets/{created.json()['id']}/rows"))
    ).json()
    assert sorted(row["data"]["source"] for row in rows["items"]) == [site.url(p) for p in PAGES]
    # The new worker went on from the page the killed one was fetching.
    assert site.asked.count("/a") == 1 and site.asked.count("/b") == 2
