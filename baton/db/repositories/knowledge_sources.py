"""Knowledge sources, the documents they fetched, and the rows they wrote (by source and key).

A key's rows are replaced together and only when its hash changed; the caller does it in one
transaction per document, so a retried sync finds either all of a document's rows or none."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.tables import (
    KnowledgeRow,
    KnowledgeSet,
    KnowledgeSource,
    KnowledgeSourceDocument,
    utcnow,
)
from baton.domain.knowledge_sources import KnowledgeSourceSpec, SyncCounts, SyncOutcome
from baton.errors import Conflict, NotFound

# ---------------------------------------------------------------------------------------------
# Sources


async def create_source(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, spec: KnowledgeSourceSpec
) -> KnowledgeSource:
    """A set follows a URL once: a second source of it would write every row twice."""
    taken = await session.scalar(
        select(KnowledgeSource.id).where(
            KnowledgeSource.set_id == knowledge_set.id, KnowledgeSource.url == spec.url
        )
    )
    if taken is not None:
        raise Conflict(
            f"the set already has a source for {spec.url} ({taken})",
            details=[{"field": "url", "source_id": taken}],
        )
    source = KnowledgeSource(
        project_id=knowledge_set.project_id,
        set_id=knowledge_set.id,
        kind=spec.kind.value,
        url=spec.url,
        interval_minutes=spec.interval_minutes,
        rows_added=0,
        rows_changed=0,
        rows_removed=0,
    )
    session.add(source)
    await session.flush()
    return source


async def get_source(*, session: AsyncSession, set_id: str, source_id: str) -> KnowledgeSource:
    source = await session.get(KnowledgeSource, source_id)
    if source is None or source.set_id != set_id:
        raise NotFound(f"source {source_id} not found in knowledge set {set_id}")
    return source


async def find_source(
    *, session: AsyncSession, project_id: str, source_id: str, lock: bool = False
) -> KnowledgeSource | None:
    """The source, or None once deleted. `lock` holds its row (PostgreSQL) for the rest of the
    transaction, so two syncs of one source write one after the other."""
    source = await session.get(KnowledgeSource, source_id, with_for_update=lock)
    if source is None or source.project_id != project_id:
        return None
    return source


async def list_sources(
    *, session: AsyncSession, set_id: str, page: PageRequest = ALL
) -> Paged[KnowledgeSource]:
    query = select(KnowledgeSource).where(KnowledgeSource.set_id == set_id)
    order = (KnowledgeSource.created_at, KnowledgeSource.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def delete_source(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, source: KnowledgeSource
) -> int:
    """Deletes the source with every row it wrote; how many rows went. The source's row is
    locked first (PostgreSQL), so a sync writing its rows at this moment finishes before
    they are removed, or finds the source gone."""
    await session.execute(
        select(KnowledgeSource.id).where(KnowledgeSource.id == source.id).with_for_update()
    )
    removed = await remove_keys(session=session, knowledge_set=knowledge_set, source_id=source.id)
    await session.execute(
        delete(KnowledgeSourceDocument).where(KnowledgeSourceDocument.source_id == source.id)
    )
    await session.delete(source)
    await session.flush()
    return removed


async def start_sync(*, session: AsyncSession, source: KnowledgeSource, workflow_id: str) -> None:
    source.last_outcome = SyncOutcome.running.value
    source.last_workflow_id = workflow_id
    source.updated_at = utcnow()
    await session.flush()


async def finish_sync(
    *, session: AsyncSession, source: KnowledgeSource, counts: SyncCounts, error: str | None
) -> None:
    source.last_sync_at = utcnow()
    source.last_outcome = (SyncOutcome.failed if error else SyncOutcome.succeeded).value
    source.rows_added = counts.added
    source.rows_changed = counts.changed
    source.rows_removed = counts.removed
    source.last_error = error
    source.updated_at = source.last_sync_at
    await session.flush()


# ---------------------------------------------------------------------------------------------
# Documents: the validators of the last fetch


async def get_document(
    *, session: AsyncSession, source_id: str, url: str
) -> KnowledgeSourceDocument | None:
    return await session.get(KnowledgeSourceDocument, (source_id, url))


async def save_document(
    *,
    session: AsyncSession,
    source_id: str,
    url: str,
    etag: str | None,
    last_modified: str | None,
) -> None:
    document = await get_document(session=session, source_id=source_id, url=url)
    if document is None:
        document = KnowledgeSourceDocument(source_id=source_id, url=url)
        session.add(document)
    document.etag = etag
    document.last_modified = last_modified
    document.fetched_at = utcnow()
    await session.flush()


async def forget_documents(*, session: AsyncSession, source_id: str, keep: Collection[str]) -> None:
    """Drops the validators of documents the source no longer lists."""
    await session.execute(
        delete(KnowledgeSourceDocument).where(
            KnowledgeSourceDocument.source_id == source_id,
            KnowledgeSourceDocument.url.not_in(list(keep)),
        )
    )


# ---------------------------------------------------------------------------------------------
# Rows by source and key


async def key_hashes(
    *, session: AsyncSession, source_id: str, keys: Collection[str]
) -> dict[str, tuple[str | None, int]]:
    """For each of `keys` the source has rows under: (their hash, how many)."""
    if not keys:
        return {}
    found = await session.execute(
        select(KnowledgeRow.source_key, func.max(KnowledgeRow.source_hash), func.count())
        .where(KnowledgeRow.source_id == source_id, KnowledgeRow.source_key.in_(list(keys)))
        .group_by(KnowledgeRow.source_key)
    )
    return {key: (digest, int(count)) for key, digest, count in found.all() if key is not None}


async def remove_keys(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    source_id: str,
    only: Collection[str] | None = None,
    keep: Collection[str] | None = None,
) -> int:
    """Deletes the source's rows (under the keys `only` names, or all but those `keep`
    names) and keeps the set's row count; how many went. A statement of its own, so SQLite's
    full-text triggers see each delete."""
    statement = delete(KnowledgeRow).where(
        KnowledgeRow.set_id == knowledge_set.id, KnowledgeRow.source_id == source_id
    )
    if only is not None:
        statement = statement.where(KnowledgeRow.source_key.in_(list(only)))
    if keep is not None:
        statement = statement.where(KnowledgeRow.source_key.not_in(list(keep)))
    result = await session.execute(statement.execution_options(synchronize_session=False))
    removed = cast(CursorResult[Any], result).rowcount
    if removed:
        await set_repo.count_rows(session=session, knowledge_set=knowledge_set, delta=-removed)
    return removed


async def source_ids_of_set(*, session: AsyncSession, set_id: str) -> list[str]:
    found = await session.scalars(
        select(KnowledgeSource.id).where(KnowledgeSource.set_id == set_id)
    )
    return list(found.all())
