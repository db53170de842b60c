"""Syncing a knowledge source: fetching its documents through the egress guard, reading them
into items (a key and its rows), and writing each item's rows only when they changed.

- A fetch is conditional (`If-None-Match`, `If-Modified-Since` from the last answer): an
  unchanged document costs one request, a 304, and changes nothing.
- A web page is one item keyed by its URL, its readable text in chunks (as a URL import);
  each page of a sitemap likewise. A feed's items are keyed by their id (guid, Atom id, else
  link); a file is one item keyed by its URL, its rows as an import reads them.
- An item's hash is that of its rows: the same hash leaves its rows (and their vectors)
  alone, another replaces them. A document is written in one transaction with its
  validators, so a retry after a crash finds all of it or none of it.
- XML (sitemaps, feeds) is parsed with the standard library's expat with any DOCTYPE
  refused: no entity can be declared, so none can be expanded (no "billion laughs") and no
  external one fetched."""

from __future__ import annotations

import hashlib
import json
import xml.parsers.expat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder

from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sources as source_repo
from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeSet, KnowledgeSource
from baton.domain.knowledge import KnowledgeSetSpec
from baton.domain.knowledge_sources import (
    FETCH_TIMEOUT_S,
    MAX_DOCUMENT_BYTES,
    MAX_SITEMAP_PAGES,
    SourceKind,
    SyncCounts,
)
from baton.errors import BatonError, InvalidInput
from baton.integrations import http
from baton.knowledge import imports, store

# Pages are chunked as a URL import's default.
CHUNK_WORDS = 200
CHUNK_OVERLAP = 20


class SourceFailed(BatonError):
    """A document could not be synced; the source's rows from before stay."""

    code = "source_failed"
    status_code = 502


@dataclass(frozen=True)
class Item:
    key: str
    rows: list[dict[str, Any]]

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.rows, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Fetched:
    """A document's answer: None `body` when it did not change since the last fetch."""

    url: str
    body: bytes | None
    content_type: str  # the media type alone, lower case
    etag: str | None
    last_modified: str | None
    charset: str = "utf-8"

    def text(self) -> str:
        assert self.body is not None
        try:
            return self.body.decode(self.charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


async def fetch_document(
    url: str,
    *,
    policy: http.EgressPolicy,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    headers = {"accept": "*/*"}
    if etag:
        headers["if-none-match"] = etag
    if last_modified:
        headers["if-modified-since"] = last_modified
    result = await http.fetch(
        "GET",
        url,
        policy=policy,
        headers=headers,
        timeout=FETCH_TIMEOUT_S,
        max_response_bytes=MAX_DOCUMENT_BYTES,
    )
    if result.status == 304:
        return Fetched(url, None, "", etag, last_modified)
    if not 200 <= result.status < 300:
        raise SourceFailed(f"{url} answered HTTP {result.status}")
    header = Message()
    header["content-type"] = result.headers.get("content-type", "")
    return Fetched(
        url=url,
        body=result.body,
        content_type=header.get_content_type() if header["content-type"] else "",
        etag=result.headers.get("etag"),
        last_modified=result.headers.get("last-modified"),
        charset=header.get_content_charset() or "utf-8",
    )


# ---------------------------------------------------------------------------------------------
# Reading documents into items


async def items_of(
    kind: SourceKind, fetched: Fetched, *, spec: KnowledgeSetSpec, max_rows: int
) -> list[Item]:
    assert fetched.body is not None
    if kind is SourceKind.feed:
        return feed_items(fetched.body, feed_url=fetched.url)
    if kind is SourceKind.file:
        return [await file_item(fetched, spec=spec, max_rows=max_rows)]
    return [page_item(fetched)]


def page_item(fetched: Fetched) -> Item:
    text = fetched.text()
    if "html" in fetched.content_type or not fetched.content_type:
        text = imports.readable_text(text)
    elif not fetched.content_type.startswith("text/"):
        raise SourceFailed(f"{fetched.url} is {fetched.content_type}, not HTML or text")
    chunks = imports.chunk_text(text, chunk_size=CHUNK_WORDS, overlap=CHUNK_OVERLAP)
    return Item(key=fetched.url, rows=imports.text_rows(chunks, source=fetched.url))


async def file_item(fetched: Fetched, *, spec: KnowledgeSetSpec, max_rows: int) -> Item:
    """A CSV, JSON or JSONL file (by its extension, else its content type) read as an import
    reads it, or text chunked as a page is."""
    assert fetched.body is not None
    body = fetched.body
    extension = fetched.url.split("?", 1)[0].rsplit("/", 1)[-1].rpartition(".")[2].lower()
    by_type = {"text/csv": "csv", "application/json": "json", "application/x-ndjson": "jsonl"}
    name = extension if extension in ("csv", "json", "jsonl", "ndjson") else None
    name = name or by_type.get(fetched.content_type)
    if name is None:
        return page_item(fetched)
    file_format = imports.format_of(None, name)
    parsers = {
        imports.ImportFormat.csv: imports.csv_rows,
        imports.ImportFormat.jsonl: imports.jsonl_rows,
        imports.ImportFormat.json: imports.json_rows,
    }

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), imports.READ_BYTES):
            yield body[start : start + imports.READ_BYTES]

    rows: list[dict[str, Any]] = []
    async for row in parsers[file_format](chunks(), spec):
        rows.append(row)
        if len(rows) > max_rows:
            raise SourceFailed(f"{fetched.url} has more than {max_rows} rows")
    return Item(key=fetched.url, rows=rows)


def sitemap_urls(body: bytes, *, sitemap_url: str) -> list[str]:
    """The pages a sitemap lists (`<url><loc>`), in order, each once, at most
    MAX_SITEMAP_PAGES of them. A sitemap index (`<sitemapindex>`) is not followed."""
    root = parse_xml(body, what=sitemap_url)
    if _local(root.tag) != "urlset":
        raise SourceFailed(
            f"{sitemap_url} is not a sitemap (<urlset>); a sitemap index is not followed: "
            "add each of its sitemaps as a source"
        )
    urls: list[str] = []
    for url in root:
        loc = next((child for child in url if _local(child.tag) == "loc"), None)
        text = (loc.text or "").strip() if loc is not None else ""
        if text and text not in urls:
            urls.append(text)
        if len(urls) == MAX_SITEMAP_PAGES:
            break
    return urls


def feed_items(body: bytes, *, feed_url: str) -> list[Item]:
    """RSS 2.0 `<item>`s or Atom `<entry>`s, each one row: title, link, text (its content or
    summary, as readable text), published, source (the feed)."""
    root = parse_xml(body, what=feed_url)
    if _local(root.tag) == "rss":
        entries = [e for e in root.iter() if _local(e.tag) == "item"]
    elif _local(root.tag) == "feed":
        entries = [e for e in root if _local(e.tag) == "entry"]
    else:
        raise SourceFailed(f"{feed_url} is not an RSS or Atom feed")
    items: dict[str, Item] = {}
    for entry in entries:
        fields = {_local(child.tag): child for child in reversed(entry)}
        link = _link(fields.get("link"))
        text_of = {name: _text(element) for name, element in fields.items()}
        body_html = text_of.get("encoded") or text_of.get("content") or text_of.get("description")
        row = {
            "title": text_of.get("title"),
            "link": link,
            "text": imports.readable_text(body_html or text_of.get("summary") or ""),
            "published": text_of.get("pubDate")
            or text_of.get("published")
            or text_of.get("updated"),
            "source": feed_url,
        }
        key = text_of.get("guid") or text_of.get("id") or link or row["title"]
        if not key:
            continue
        items[key] = Item(key=key, rows=[{k: v for k, v in row.items() if v}])
    return list(items.values())


def parse_xml(body: bytes, *, what: str) -> Element:
    """An element tree of `body`, refusing any DOCTYPE (so any entity declaration)."""
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")

    def refuse(*_: Any) -> None:
        raise SourceFailed(f"{what} declares a DOCTYPE; XML with DOCTYPEs is not read")

    def start(name: str, attributes: dict[str, str]) -> None:
        builder.start("{" + name if "}" in name else name, attributes)

    def end(name: str) -> None:
        builder.end("{" + name if "}" in name else name)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except xml.parsers.expat.ExpatError as exc:
        raise SourceFailed(f"{what} is not well-formed XML: {exc}") from exc
    return builder.close()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: Element) -> str:
    return "".join(element.itertext()).strip()


def _link(element: Element | None) -> str | None:
    if element is None:
        return None
    return element.get("href") or _text(element) or None


# ---------------------------------------------------------------------------------------------
# Writing items


async def write_items(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    source: KnowledgeSource,
    items: list[Item],
    whole: bool,
) -> SyncCounts:
    """Replaces the rows of each item whose hash changed. `whole`: the items are all the
    source has (a feed, a file), so rows under any other key are removed."""
    counts = SyncCounts()
    known = await source_repo.key_hashes(
        session=session, source_id=source.id, keys=[item.key for item in items]
    )
    for item in items:
        digest = item.hash
        old_hash, old_count = known.get(item.key, (None, 0))
        if old_hash == digest:
            counts.unchanged += 1
            continue
        if old_count:
            await source_repo.remove_keys(
                session=session, knowledge_set=knowledge_set, source_id=source.id, only=[item.key]
            )
        try:
            await store.insert_rows(
                session=session,
                knowledge_set=knowledge_set,
                rows=item.rows,
                source=row_repo.RowSource(source_id=source.id, key=item.key, hash=digest),
            )
        except InvalidInput as exc:
            raise SourceFailed(
                f"{item.key}: {exc.message} (the set {spec_of(knowledge_set).name!r} takes "
                "what its columns declare)"
            ) from exc
        new_count = len(item.rows)
        counts.changed += min(old_count, new_count)
        counts.added += max(new_count - old_count, 0)
        counts.removed += max(old_count - new_count, 0)
    if whole:
        counts.removed += await source_repo.remove_keys(
            session=session,
            knowledge_set=knowledge_set,
            source_id=source.id,
            keep=[item.key for item in items],
        )
    return counts
