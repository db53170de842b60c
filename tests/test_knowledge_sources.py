"""Sources that keep a knowledge set in sync: a sitemap's pages, a feed's items and a file,
fetched through the egress guard from a real local web site (the operator allows its host
and port), re-synced with conditional requests, and written so that nothing is duplicated,
an unchanged page costs a 304, a changed page replaces only its rows, a page gone removes
its rows and a failing source keeps what it had."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.knowledge_sources import SourceSyncActivities
from baton.domain.knowledge import embed_workflow_id
from baton.domain.knowledge_sources import SyncBatch, source_schedule_id
from baton.knowledge.sources import Fetched, SourceFailed, feed_items, page_item, parse_xml
from baton.settings import Settings
from tests.fakes.embeddings_server import FakeOpenAIEmbeddings
from tests.fakes.site_server import FakeSite
from tests.support import Tenant, assert_error, items_of
from tests.support.factories import make_set

PAGES = ["/a", "/b", "/c"]


@pytest.fixture(scope="module")
def site() -> Iterator[FakeSite]:
    server = FakeSite().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[FakeOpenAIEmbeddings]:
    server = FakeOpenAIEmbeddings()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    settings: Settings, site: FakeSite, embeddings_server: FakeOpenAIEmbeddings
) -> Settings:
    allowed = [site.host, f"127.0.0.1:{embeddings_server.port}"]
    return settings.model_copy(update={"http_allow_hosts": allowed})


@pytest.fixture
def validator() -> str | None:
    """The validator the site's pages are sent with (a test parametrizes it for another)."""
    return "etag"


@pytest.fixture
def fresh_site(site: FakeSite, validator: str | None) -> FakeSite:
    """The site, its answers and failures forgotten, its pages sent with `validator`."""
    site.reset()
    site.fail.clear()
    site.validator = validator
    return site


@pytest.fixture
def base(request: pytest.FixtureRequest) -> str:
    """The path this test's pages live under on the shared site."""
    return "/" + request.node.name.replace("[", "-").replace("]", "")


def build_site(site: FakeSite, base: str) -> str:
    for page in PAGES:
        site.page(base + page, f"the text of page {page[1:]}")
    site.sitemap(base + "/sitemap.xml", [base + page for page in PAGES])
    return site.url(base + "/sitemap.xml")


async def new_set(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    return await make_set(api, tenant, name="site")


def sources_url(tenant: Tenant, knowledge_set: dict[str, Any], path: str = "") -> str:
    return tenant.url(f"/knowledge/sets/{knowledge_set['id']}/sources{path}")


async def add_source(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], kind: str, url: str
) -> dict[str, Any]:
    created = await api.post(
        sources_url(tenant, knowledge_set),
        json={"kind": kind, "url": url, "interval_minutes": 60},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    source: dict[str, Any] = created.json()
    return source


async def first_sync(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], source: dict[str, Any]
) -> dict[str, Any]:
    """The source once the sync its schedule started on creation has ended."""
    deadline = time.monotonic() + 20
    while True:
        got = await api.get(
            sources_url(tenant, knowledge_set, f"/{source['id']}"), headers=tenant.headers
        )
        body: dict[str, Any] = got.json()
        if body["last_outcome"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, f"the first sync did not end: {body}"
        await asyncio.sleep(0.1)


async def sync(
    api: httpx.AsyncClient,
    client: Client,
    tenant: Tenant,
    knowledge_set: dict[str, Any],
    source: dict[str, Any],
) -> dict[str, Any]:
    """Syncs now, waits for the sync's workflow, and returns the source as it then is."""
    started = await api.post(
        sources_url(tenant, knowledge_set, f"/{source['id']}/sync"), headers=tenant.headers
    )
    assert started.status_code == 202, started.text
    await client.get_workflow_handle(started.json()["workflow_id"]).result()
    got = await api.get(
        sources_url(tenant, knowledge_set, f"/{source['id']}"), headers=tenant.headers
    )
    body: dict[str, Any] = got.json()
    assert body["last_workflow_id"] == started.json()["workflow_id"]
    return body


async def rows_of(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every row of the set, page after page."""
    return await items_of(
        api, tenant.url(f"/knowledge/sets/{knowledge_set['id']}/rows"), tenant.headers
    )


async def rows_by_source(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any]
) -> dict[str, list[tuple[int, str]]]:
    """Each page's rows as (id, text), by the page's URL."""
    rows = await rows_of(api, tenant, knowledge_set)
    found: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        found.setdefault(row["data"]["source"], []).append((row["id"], row["data"]["text"]))
    return found


async def followed_page(
    api: httpx.AsyncClient, tenant: Tenant, site: FakeSite, base: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new set and its source following the test's page /a, the test's pages built first
    (with no worker running, nothing syncs it)."""
    build_site(site, base)
    knowledge_set = await new_set(api, tenant)
    source = await add_source(api, tenant, knowledge_set, "web_page", site.url(base + "/a"))
    return knowledge_set, source


class Synced(NamedTuple):
    """The site, the path the test's pages are under, and a set following their sitemap,
    with its source once the first sync succeeded."""

    site: FakeSite
    base: str
    knowledge_set: dict[str, Any]
    source: dict[str, Any]


@pytest.fixture
async def synced(
    worker: Worker, api: httpx.AsyncClient, tenant: Tenant, fresh_site: FakeSite, base: str
) -> Synced:
    """A set following a sitemap of the test's three pages, its first sync done."""
    knowledge_set = await new_set(api, tenant)
    source = await add_source(api, tenant, knowledge_set, "sitemap", build_site(fresh_site, base))
    first = await first_sync(api, tenant, knowledge_set, source)
    assert first["last_outcome"] == "succeeded", first
    return Synced(fresh_site, base, knowledge_set, first)


async def test_a_sitemap_of_three_pages_syncs_each_pages_rows(
    api: httpx.AsyncClient, tenant: Tenant, synced: Synced
):
    fresh_site, base, knowledge_set, source = synced

    assert (source["rows_added"], source["rows_changed"], source["rows_removed"]) == (3, 0, 0)
    assert source["last_error"] is None and source["last_sync_at"] is not None
    rows = await rows_by_source(api, tenant, knowledge_set)
    assert sorted(rows) == [fresh_site.url(base + page) for page in PAGES]
    assert rows[fresh_site.url(base + "/b")][0][1] == f"{base}/b the text of page b"
    listed = await api.get(sources_url(tenant, knowledge_set), headers=tenant.headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [source["id"]]
    assert listed.json()["next_cursor"] is None


async def test_a_resync_of_unchanged_pages_gets_304s_and_changes_nothing(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant, synced: Synced
):
    fresh_site, base, knowledge_set, source = synced
    before = await rows_by_source(api, tenant, knowledge_set)
    fresh_site.reset()

    again = await sync(api, temporal_env.client, tenant, knowledge_set, source)

    assert again["last_outcome"] == "succeeded"
    assert (again["rows_added"], again["rows_changed"], again["rows_removed"]) == (0, 0, 0)
    assert sorted(fresh_site.statuses(304)) == sorted(base + page for page in PAGES)
    assert fresh_site.statuses(200) == [base + "/sitemap.xml"]  # the list itself, once
    assert await rows_by_source(api, tenant, knowledge_set) == before


@pytest.mark.parametrize("validator", ["last-modified"])
async def test_a_server_that_sends_last_modified_is_asked_if_modified_since(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant, synced: Synced
):
    fresh_site, base, knowledge_set, source = synced
    fresh_site.page(base + "/c", "page c is newer")
    fresh_site.reset()

    again = await sync(api, temporal_env.client, tenant, knowledge_set, source)

    assert (again["rows_added"], again["rows_changed"], again["rows_removed"]) == (0, 1, 0)
    assert sorted(fresh_site.statuses(304)) == [base + "/a", base + "/b"]
    assert sorted(fresh_site.statuses(200)) == [base + "/c", base + "/sitemap.xml"]


async def test_one_changed_page_has_only_its_rows_replaced(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant, synced: Synced
):
    fresh_site, base, knowledge_set, source = synced
    before = await rows_by_source(api, tenant, knowledge_set)
    fresh_site.page(base + "/b", "page b was rewritten")

    again = await sync(api, temporal_env.client, tenant, knowledge_set, source)

    assert (again["rows_added"], again["rows_changed"], again["rows_removed"]) == (0, 1, 0)
    after = await rows_by_source(api, tenant, knowledge_set)
    changed = fresh_site.url(base + "/b")
    assert after[changed][0][1].endswith("page b was rewritten")
    assert after[changed][0][0] != before[changed][0][0]
    for page in ("/a", "/c"):
        url = fresh_site.url(base + page)
        assert after[url] == before[url]  # same row, same id: not re-embedded
    assert sum(len(rows) for rows in after.values()) == 3


def embedded_texts(server: FakeOpenAIEmbeddings) -> list[str]:
    texts: list[str] = []
    for received in server.requests:
        given = received.body["input"]
        texts.extend([given] if isinstance(given, str) else given)
    return texts


async def test_only_the_changed_pages_rows_are_embedded_again(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    fresh_site: FakeSite,
    embeddings_server: FakeOpenAIEmbeddings,
    base: str,
):
    embeddings_server.reset()
    integration = await api.post(
        tenant.url("/integrations"),
        json={
            "name": "embedder",
            "kind": "openai",
            "api_key": "sk-test-sources",
            "base_url": embeddings_server.base_url,
        },
        headers=tenant.headers,
    )
    assert integration.status_code == 201, integration.text
    embedding = {"provider": "openai", "integration": "embedder", "model": "e"}
    knowledge_set = await make_set(api, tenant, name="embedded site", embedding=embedding)
    source = await add_source(api, tenant, knowledge_set, "sitemap", build_site(fresh_site, base))
    await first_sync(api, tenant, knowledge_set, source)
    await temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set["id"])).result()
    assert len(embedded_texts(embeddings_server)) == 3

    embeddings_server.reset()
    fresh_site.page(base + "/b", "page b was rewritten")
    await sync(api, temporal_env.client, tenant, knowledge_set, source)
    await temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set["id"])).result()

    [again] = embedded_texts(embeddings_server)  # one row's text, not the whole site's
    assert again.startswith(f"{base}/b page b was rewritten")
    rows = await rows_of(api, tenant, knowledge_set)
    assert [row["embedded"] for row in rows] == [True] * 3


async def test_a_page_removed_from_the_sitemap_has_its_rows_removed(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant, synced: Synced
):
    fresh_site, base, knowledge_set, source = synced
    fresh_site.sitemap(base + "/sitemap.xml", [base + "/a", base + "/c"])

    again = await sync(api, temporal_env.client, tenant, knowledge_set, source)

    assert (again["rows_added"], again["rows_changed"], again["rows_removed"]) == (0, 0, 1)
    after = await rows_by_source(api, tenant, knowledge_set)
    assert sorted(after) == [fresh_site.url(base + "/a"), fresh_site.url(base + "/c")]
    got = await api.get(
        tenant.url(f"/knowledge/sets/{knowledge_set['id']}"), headers=tenant.headers
    )
    assert got.json()["row_count"] == 2


async def test_a_failing_source_keeps_its_rows_and_says_why(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant, synced: Synced
):
    fresh_site, base, knowledge_set, source = synced
    before = await rows_by_source(api, tenant, knowledge_set)

    fresh_site.fail.add(base + "/sitemap.xml")
    failed = await sync(api, temporal_env.client, tenant, knowledge_set, source)
    assert failed["last_outcome"] == "failed"
    assert "HTTP 500" in failed["last_error"] and "sitemap.xml" in failed["last_error"]
    assert await rows_by_source(api, tenant, knowledge_set) == before

    fresh_site.fail = {base + "/b"}
    fresh_site.page(base + "/a", "page a changed while b broke")
    partly = await sync(api, temporal_env.client, tenant, knowledge_set, source)
    assert partly["last_outcome"] == "failed"
    assert (
        partly["last_error"]
        == f"{fresh_site.url(base + '/b')}: {fresh_site.url(base + '/b')} answered HTTP 500"
    )
    assert partly["rows_changed"] == 1  # the other pages still synced
    after = await rows_by_source(api, tenant, knowledge_set)
    broken = fresh_site.url(base + "/b")
    assert after[broken] == before[broken]


@pytest.fixture
def activities(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> SourceSyncActivities:
    """The sync activities, for a test that calls them itself as Temporal would."""
    return SourceSyncActivities(session_factory, settings)


@pytest.mark.parametrize("validator", [None])
async def test_a_retried_sync_activity_duplicates_nothing(
    api: httpx.AsyncClient,
    tenant: Tenant,
    fresh_site: FakeSite,
    base: str,
    activities: SourceSyncActivities,
):
    """No worker runs here: the activity is called as Temporal would retry it, twice with the
    same input, against pages that send no ETag (so the second run cannot lean on 304s)."""
    knowledge_set, source = await followed_page(api, tenant, fresh_site, base)
    batch = SyncBatch(
        project_id=tenant.project_id,
        source_id=source["id"],
        urls=[fresh_site.url(base + "/a")],
    )

    first = await ActivityEnvironment().run(activities.sync_batch, batch)
    second = await ActivityEnvironment().run(activities.sync_batch, batch)

    assert (first.counts.added, second.counts.added, second.counts.unchanged) == (1, 0, 1)
    assert fresh_site.statuses(304) == []
    rows = await rows_by_source(api, tenant, knowledge_set)
    assert len(rows[fresh_site.url(base + "/a")]) == 1


async def test_a_sync_batch_retried_after_a_crash_resumes_after_the_pages_it_wrote(
    api: httpx.AsyncClient,
    tenant: Tenant,
    fresh_site: FakeSite,
    base: str,
    activities: SourceSyncActivities,
):
    """The attempt before heartbeated that it had written the first page (and counted it);
    the retry fetches only the pages after it and reports the batch's whole counts."""
    knowledge_set, source = await followed_page(api, tenant, fresh_site, base)
    urls = [fresh_site.url(base + page) for page in PAGES]
    batch = SyncBatch(project_id=tenant.project_id, source_id=source["id"], urls=urls)
    crashed = ActivityEnvironment()
    await crashed.run(
        activities.sync_batch, batch.model_copy(update={"urls": urls[:1]})
    )  # wrote the first page, then "died"
    retry = ActivityEnvironment()
    written = {"counts": {"added": 1, "changed": 0, "removed": 0, "unchanged": 0}, "errors": []}
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[1, written])
    fresh_site.reset()

    result = await retry.run(activities.sync_batch, batch)

    assert result.counts.added == 3
    assert sorted(path for path, _ in fresh_site.answers) == [base + "/b", base + "/c"]
    rows = await rows_by_source(api, tenant, knowledge_set)
    assert sorted(rows) == urls and all(len(found) == 1 for found in rows.values())


async def test_deleting_a_set_stops_its_sources_schedules(
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    fresh_site: FakeSite,
    base: str,
):
    knowledge_set, source = await followed_page(api, tenant, fresh_site, base)
    handle = temporal_env.client.get_schedule_handle(source_schedule_id(source["id"]))
    await handle.describe()

    deleted = await api.delete(
        tenant.url(f"/knowledge/sets/{knowledge_set['id']}"), headers=tenant.headers
    )

    assert deleted.status_code == 204
    with pytest.raises(RPCError):
        await handle.describe()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/",
        "http://[::1]/",
        "file:///etc/passwd",
    ],
)
async def test_a_source_url_to_a_blocked_address_is_refused_at_creation(
    api: httpx.AsyncClient, tenant: Tenant, url: str
):
    knowledge_set = await new_set(api, tenant)
    refused = await api.post(
        sources_url(tenant, knowledge_set),
        json={"kind": "web_page", "url": url},
        headers=tenant.headers,
    )
    assert_error(refused, 422, "blocked_destination")
    listed = await api.get(sources_url(tenant, knowledge_set), headers=tenant.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "ftp", "url": "http://x.test/"},
        {"kind": "feed", "url": "http://x.test/", "interval_minutes": 1},
    ],
)
async def test_a_bad_source_is_a_clear_422(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
):
    knowledge_set = await new_set(api, tenant)
    refused = await api.post(sources_url(tenant, knowledge_set), json=body, headers=tenant.headers)
    assert refused.status_code == 422


async def test_a_set_follows_a_url_once(
    api: httpx.AsyncClient, tenant: Tenant, fresh_site: FakeSite, base: str
):
    knowledge_set = await new_set(api, tenant)
    first = await add_source(api, tenant, knowledge_set, "web_page", fresh_site.url(base + "/a"))
    again = await api.post(
        sources_url(tenant, knowledge_set),
        json={"kind": "web_page", "url": fresh_site.url(base + "/a")},
        headers=tenant.headers,
    )
    assert first["id"] in assert_error(again, 409, "conflict")["error"]["message"]


async def test_another_projects_token_gets_404_on_the_sets_sources(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    fresh_site: FakeSite,
    base: str,
):
    knowledge_set, source = await followed_page(api, tenant, fresh_site, base)
    # The other project's token, on this project's URLs and on its own project's.
    for project in (tenant, other_tenant):
        url = project.url(f"/knowledge/sets/{knowledge_set['id']}/sources")
        attempts = [
            api.get(url, headers=other_tenant.headers),
            api.get(f"{url}/{source['id']}", headers=other_tenant.headers),
            api.post(
                url,
                json={"kind": "web_page", "url": fresh_site.url("/x")},
                headers=other_tenant.headers,
            ),
            api.post(f"{url}/{source['id']}/sync", headers=other_tenant.headers),
            api.delete(f"{url}/{source['id']}", headers=other_tenant.headers),
        ]
        for response in await asyncio.gather(*attempts):
            assert response.status_code == 404, (response.request.method, response.request.url)
    still = await api.get(
        sources_url(tenant, knowledge_set, f"/{source['id']}"), headers=tenant.headers
    )
    assert still.status_code == 200


async def test_a_deleted_source_takes_its_rows_and_its_schedule_with_it(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant, synced: Synced
):
    knowledge_set, source = synced.knowledge_set, synced.source
    handle = temporal_env.client.get_schedule_handle(source_schedule_id(source["id"]))
    described = await handle.describe()
    assert described.schedule.spec.intervals[0].every.total_seconds() == 3600
    kept = await api.post(
        tenant.url(f"/knowledge/sets/{knowledge_set['id']}/rows"),
        json={"text": "typed by hand", "source": "me"},
        headers=tenant.headers,
    )
    assert kept.status_code == 201

    deleted = await api.delete(
        sources_url(tenant, knowledge_set, f"/{source['id']}"), headers=tenant.headers
    )

    assert deleted.status_code == 204
    assert sorted(await rows_by_source(api, tenant, knowledge_set)) == ["me"]
    with pytest.raises(RPCError):
        await handle.describe()


async def test_a_feed_syncs_a_row_per_item_and_drops_items_gone_from_it(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    fresh_site: FakeSite,
    base: str,
):

    def rss(*items: tuple[str, str]) -> tuple[str, str]:
        entries = "".join(
            f"<item><guid>{guid}</guid><title>{title}</title><link>http://x.test/{guid}</link>"
            f"<description>&lt;p&gt;about {title}&lt;/p&gt;</description></item>"
            for guid, title in items
        )
        return (
            f'<rss version="2.0"><channel><title>news</title>{entries}</channel></rss>',
            "application/rss+xml",
        )

    fresh_site.documents[base + "/feed"] = rss(("1", "tea"), ("2", "rain"))
    knowledge_set = await new_set(api, tenant)
    source = await add_source(api, tenant, knowledge_set, "feed", fresh_site.url(base + "/feed"))
    synced = await first_sync(api, tenant, knowledge_set, source)
    assert (synced["last_outcome"], synced["rows_added"]) == ("succeeded", 2)

    fresh_site.documents[base + "/feed"] = rss(("2", "rain"), ("3", "bikes"))
    again = await sync(api, temporal_env.client, tenant, knowledge_set, source)

    assert (again["rows_added"], again["rows_changed"], again["rows_removed"]) == (1, 0, 1)
    rows = await rows_of(api, tenant, knowledge_set)
    assert sorted((row["data"]["title"], row["data"]["text"]) for row in rows) == [
        ("bikes", "about bikes"),
        ("rain", "about rain"),
    ]


async def test_a_file_source_reads_its_rows_as_an_import_does(
    worker: Worker,
    api: httpx.AsyncClient,
    tenant: Tenant,
    fresh_site: FakeSite,
    base: str,
):
    fresh_site.documents[base + "/prices.csv"] = ("name,price\ntea,3\nbread,2\n", "text/csv")
    knowledge_set = await new_set(api, tenant)
    source = await add_source(
        api, tenant, knowledge_set, "file", fresh_site.url(base + "/prices.csv")
    )
    synced = await first_sync(api, tenant, knowledge_set, source)
    assert (synced["last_outcome"], synced["rows_added"]) == ("succeeded", 2), synced
    rows = await rows_of(api, tenant, knowledge_set)
    assert sorted(row["data"]["name"] for row in rows) == ["bread", "tea"]


def test_xml_with_a_doctype_is_refused_so_no_entity_can_expand():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><rss><channel><item><title>&lol2;</title>'
        b"</item></channel></rss>"
    )
    with pytest.raises(SourceFailed, match="DOCTYPE"):
        feed_items(bomb, feed_url="http://x.test/feed")
    with pytest.raises(SourceFailed, match="not well-formed"):
        parse_xml(b"<rss><channel>", what="http://x.test/feed")


def test_an_atom_feed_gives_a_row_per_entry_keyed_by_its_id():
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b'<entry><id>urn:1</id><title>first</title><link href="http://x.test/1"/>'
        b"<updated>2026-12-01T00:00:00Z</updated><summary>one</summary></entry>"
        b'<entry><id>urn:2</id><title>second</title><link href="http://x.test/2"/>'
        b'<content type="html">&lt;b&gt;two&lt;/b&gt;</content></entry></feed>'
    )
    items = feed_items(atom, feed_url="http://x.test/atom")
    assert [(item.key, item.rows) for item in items] == [
        (
            "urn:1",
            [
                {
                    "title": "first",
                    "link": "http://x.test/1",
                    "text": "one",
                    "published": "2026-12-01T00:00:00Z",
                    "source": "http://x.test/atom",
                }
            ],
        ),
        (
            "urn:2",
            [
                {
                    "title": "second",
                    "link": "http://x.test/2",
                    "text": "two",
                    "source": "http://x.test/atom",
                }
            ],
        ),
    ]


def test_a_page_is_read_in_the_charset_its_server_names():
    fetched = Fetched(
        url="http://x.test/",
        body="<p>café crème</p>".encode("latin-1"),
        content_type="text/html",
        etag=None,
        last_modified=None,
        charset="latin-1",
    )
    assert page_item(fetched).rows[0]["text"] == "café crème"
