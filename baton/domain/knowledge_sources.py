"""Sources of a knowledge set that stay in sync: a web page, a sitemap (every page it lists),
an RSS or Atom feed (every item a row) or a file URL (CSV, JSON, JSONL or text), re-fetched
on an interval by a Temporal Schedule (`knowledge-source-<id>`).

Every row a source wrote carries the source's id, a key (the page's URL, the feed item's id,
the file's URL) and the hash of what the key gave: a sync replaces a key's rows only when the
hash changed, and removes the rows of keys the source no longer has. The models below are
the payloads of `KnowledgeSourceSyncWorkflow` and its activities: ids and counts, never rows."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

# Fetching more often than this is a crawler's job, not a knowledge source's.
MIN_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 7 * 24 * 60
DEFAULT_INTERVAL_MINUTES = 60
# Bounds of one sync: pages of a sitemap, bytes of one fetched document, seconds per request.
MAX_SITEMAP_PAGES = 500
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
# Sitemap pages fetched per activity: each one heartbeats after every page.
PAGES_PER_BATCH = 20


class SourceKind(StrEnum):
    web_page = "web_page"
    sitemap = "sitemap"
    feed = "feed"
    file = "file"


class SyncOutcome(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class KnowledgeSourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SourceKind
    url: str = Field(min_length=1, max_length=2000)
    interval_minutes: int = Field(
        default=DEFAULT_INTERVAL_MINUTES, ge=MIN_INTERVAL_MINUTES, le=MAX_INTERVAL_MINUTES
    )


class SyncCounts(BaseModel):
    """Rows a sync added, replaced (`changed`) and removed, and documents it found unchanged
    (a 304 or the same hash)."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    def plus(self, other: SyncCounts) -> SyncCounts:
        return SyncCounts(
            added=self.added + other.added,
            changed=self.changed + other.changed,
            removed=self.removed + other.removed,
            unchanged=self.unchanged + other.unchanged,
        )


class SourceSyncInput(BaseModel):
    """The input of `KnowledgeSourceSyncWorkflow`; the schedule's action carries it."""

    project_id: str
    source_id: str


class SyncPlan(BaseModel):
    """What the first activity found: the documents to fetch (one for a page, a feed or a
    file; a sitemap's pages), with the rows of pages gone from the sitemap already removed.
    `gone` is set when the source was deleted: the sync has nothing to do."""

    urls: list[str] = []
    counts: SyncCounts = SyncCounts()
    gone: bool = False
    # Why the source could not be listed (its sitemap did not answer): nothing is changed.
    error: str | None = None


class SyncBatch(BaseModel):
    project_id: str
    source_id: str
    urls: list[str]


class SyncBatchResult(BaseModel):
    counts: SyncCounts = SyncCounts()
    # "url: why" for each document that could not be synced; its old rows are kept.
    errors: list[str] = []


class SyncEnd(BaseModel):
    project_id: str
    source_id: str
    counts: SyncCounts
    error: str | None = None


def source_schedule_id(source_id: str) -> str:
    return f"knowledge-source-{source_id}"


def source_sync_workflow_id(source_id: str) -> str:
    """The scheduled runs' id (Temporal appends the fire time); a sync asked for through the
    API adds its own suffix."""
    return f"knowledge-source-sync-{source_id}"
