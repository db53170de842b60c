"""Syncing a knowledge source (baton/knowledge/sources.py): list its documents, fetch and
write them a batch at a time, record how it went. Only URLs and counts go through history;
rows go straight to the database.

A document is written in one transaction, and the batch activity heartbeats how far it
got: a retry on another worker after a crash starts at the first document not written, and
one written twice would find its hash unchanged anyway."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.heartbeats import with_heartbeats
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import knowledge_sources as source_repo
from baton.db.tables import KnowledgeSet, KnowledgeSource
from baton.domain.knowledge import EmbeddingProvider
from baton.domain.knowledge_sources import (
    SourceKind,
    SourceSyncInput,
    SyncBatch,
    SyncBatchResult,
    SyncCounts,
    SyncEnd,
    SyncPlan,
)
from baton.errors import BatonError
from baton.integrations.http import EgressPolicy
from baton.knowledge import sources
from baton.services.embedding import embed_pending
from baton.settings import Settings


class SourceSyncActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._policy = EgressPolicy.from_settings(settings)

    @activity.defn(name="baton.knowledge.source_plan")
    async def plan(self, start: SourceSyncInput) -> SyncPlan:
        """The documents to fetch. A sitemap is fetched (always: its list is what tells a
        page gone), and the rows of pages it no longer lists are removed."""
        async with self._sessions.begin() as session:
            source = await source_repo.find_source(
                session=session, project_id=start.project_id, source_id=start.source_id
            )
            if source is None:
                return SyncPlan(gone=True)
            await source_repo.start_sync(
                session=session, source=source, workflow_id=activity.info().workflow_id or ""
            )
            kind, url = SourceKind(source.kind), source.url
        if kind is not SourceKind.sitemap:
            return SyncPlan(urls=[url])
        try:
            fetched = await with_heartbeats(sources.fetch_document(url, policy=self._policy))
            assert fetched.body is not None  # no validators were sent
            urls = sources.sitemap_urls(fetched.body, sitemap_url=url)
        except BatonError as exc:
            return SyncPlan(error=exc.message)
        async with self._sessions.begin() as session:
            found = await self._source_and_set(session, start.project_id, start.source_id)
            if found is None:
                return SyncPlan(gone=True)
            source, knowledge_set = found
            removed = await source_repo.remove_keys(
                session=session, knowledge_set=knowledge_set, source_id=source.id, keep=urls
            )
            await source_repo.forget_documents(session=session, source_id=source.id, keep=urls)
        return SyncPlan(urls=urls, counts=SyncCounts(removed=removed))

    @activity.defn(name="baton.knowledge.source_sync_batch")
    async def sync_batch(self, batch: SyncBatch) -> SyncBatchResult:
        """Fetches and writes each document of the batch. One that fails is reported and its
        old rows kept; the others go on."""
        info = activity.info()
        done, result = 0, SyncBatchResult()
        if info.heartbeat_details:
            # A retry: the documents before `done` were written by the attempt before.
            done = int(info.heartbeat_details[0])
            result = SyncBatchResult.model_validate(info.heartbeat_details[1])
        for url in batch.urls[done:]:
            try:
                counts = await with_heartbeats(
                    self._sync_document(batch, url), done, result.model_dump(mode="json")
                )
            except BatonError as exc:
                result.errors.append(f"{url}: {exc.message}")
            else:
                if counts is None:
                    return result  # the source was deleted meanwhile
                result.counts = result.counts.plus(counts)
            done += 1
            activity.heartbeat(done, result.model_dump(mode="json"))
        if result.counts.added or result.counts.changed:
            await self._embed(batch)
        return result

    @activity.defn(name="baton.knowledge.source_finish")
    async def finish(self, end: SyncEnd) -> None:
        async with self._sessions.begin() as session:
            source = await source_repo.find_source(
                session=session, project_id=end.project_id, source_id=end.source_id
            )
            if source is not None:
                await source_repo.finish_sync(
                    session=session, source=source, counts=end.counts, error=end.error
                )

    async def _sync_document(self, batch: SyncBatch, url: str) -> SyncCounts | None:
        async with self._sessions() as session:
            found = await self._source_and_set(session, batch.project_id, batch.source_id)
            if found is None:
                return None
            source, knowledge_set = found
            kind, spec = SourceKind(source.kind), set_repo.spec_of(knowledge_set)
            document = await source_repo.get_document(session=session, source_id=source.id, url=url)
            etag = document.etag if document else None
            last_modified = document.last_modified if document else None
        fetched = await sources.fetch_document(
            url, policy=self._policy, etag=etag, last_modified=last_modified
        )
        if fetched.body is None:
            return SyncCounts(unchanged=1)
        items = await sources.items_of(
            kind, fetched, spec=spec, max_rows=self._settings.max_rows_per_import
        )
        async with self._sessions.begin() as session:
            # Locked (on PostgreSQL) while written: two syncs of one source take turns.
            found = await self._source_and_set(
                session, batch.project_id, batch.source_id, lock=True
            )
            if found is None:
                return None
            source, knowledge_set = found
            counts = await sources.write_items(
                session=session,
                knowledge_set=knowledge_set,
                source=source,
                items=items,
                whole=kind in (SourceKind.feed, SourceKind.file),
            )
            await source_repo.save_document(
                session=session,
                source_id=source.id,
                url=url,
                etag=fetched.etag,
                last_modified=fetched.last_modified,
            )
        return counts

    async def _source_and_set(
        self, session: AsyncSession, project_id: str, source_id: str, *, lock: bool = False
    ) -> tuple[KnowledgeSource, KnowledgeSet] | None:
        source = await source_repo.find_source(
            session=session, project_id=project_id, source_id=source_id, lock=lock
        )
        if source is None:
            return None
        knowledge_set = await set_repo.get_set(
            session=session, project_id=project_id, set_id=source.set_id
        )
        return source, knowledge_set

    async def _embed(self, batch: SyncBatch) -> None:
        async with self._sessions() as session:
            found = await self._source_and_set(session, batch.project_id, batch.source_id)
        if found is None:
            return
        knowledge_set = found[1]
        if knowledge_set.embedding.get("provider", "none") == EmbeddingProvider.none:
            return
        await embed_pending(
            activity.client(),
            project_id=knowledge_set.project_id,
            set_id=knowledge_set.id,
            task_queue=activity.info().task_queue,
        )
