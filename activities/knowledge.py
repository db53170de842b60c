"""Embedding a set's rows: a batch of rows without a vector at a time, progress kept in the
set's embed job. Rows and vectors stay in the database; only counts go through history."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import as_application_error
from activities.llm import provider_failure
from baton.db.tables import KnowledgeJob, KnowledgeRow, KnowledgeSet, utcnow
from baton.domain.knowledge import EmbedBatch, EmbedBatchResult, EmbedJobEnd, JobKind, JobStatus
from baton.errors import BatonError, NotFound
from baton.integrations.llm import ProviderError
from baton.knowledge.embeddings import EmbedderFor, to_blob


class EmbeddingActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], embedders: EmbedderFor
    ) -> None:
        self._sessions = session_factory
        self._embedders = embedders

    @activity.defn(name="baton.knowledge.embed_batch")
    async def embed_batch(self, batch: EmbedBatch) -> EmbedBatchResult:
        """Embeds up to `batch_size` rows that have no vector. A vector is stored only if the
        row's text is still the one embedded, so an edit made meanwhile is embedded next."""
        try:
            async with self._sessions() as session:
                knowledge_set = await _set(session, batch)
                pending = (
                    await session.execute(
                        select(KnowledgeRow.id, KnowledgeRow.content)
                        .where(
                            KnowledgeRow.set_id == batch.set_id,
                            KnowledgeRow.embedding.is_(None),
                        )
                        .order_by(KnowledgeRow.id)
                        .limit(batch.batch_size)
                    )
                ).all()
            embedder = await self._embedders(knowledge_set)
            vectors = await embedder.embed([content for _, content in pending])
        except ProviderError as exc:
            raise provider_failure(exc) from None
        except BatonError as exc:
            raise as_application_error(exc) from exc
        async with self._sessions.begin() as session:
            stored = await _store_vectors(
                session,
                batch.set_id,
                [
                    (row_id, content, to_blob(v))
                    for (row_id, content), v in zip(pending, vectors, strict=True)
                ],
            )
            remaining = await _pending_count(session, batch.set_id)
            done = await _record_progress(session, batch, stored=stored, remaining=remaining)
        return EmbedBatchResult(embedded=stored, remaining=remaining, done=done)

    @activity.defn(name="baton.knowledge.embed_finish")
    async def finish(self, end: EmbedJobEnd) -> None:
        """The job's final status; nothing to do when its set was deleted meanwhile. A job
        that failed before its first batch is recorded here, so its error shows."""
        async with self._sessions.begin() as session:
            job = await session.get(KnowledgeJob, end.job_id)
            if job is None:
                knowledge_set = await session.get(KnowledgeSet, end.set_id or "")
                if knowledge_set is None or knowledge_set.project_id != end.project_id:
                    return
                job = KnowledgeJob(
                    id=end.job_id,
                    project_id=knowledge_set.project_id,
                    set_id=knowledge_set.id,
                    kind=JobKind.embed.value,
                    workflow_id=activity.info().workflow_id,
                    done=0,
                )
                session.add(job)
            job.status = end.status.value
            job.error = end.error
            job.updated_at = utcnow()


async def _set(session: AsyncSession, batch: EmbedBatch) -> KnowledgeSet:
    knowledge_set = await session.get(KnowledgeSet, batch.set_id)
    if knowledge_set is None or knowledge_set.project_id != batch.project_id:
        raise NotFound(f"knowledge set {batch.set_id} was deleted")
    return knowledge_set


async def _store_vectors(
    session: AsyncSession, set_id: str, vectors: list[tuple[int, str, bytes]]
) -> int:
    stored = 0
    for row_id, content, blob in vectors:
        result = await session.execute(
            update(KnowledgeRow)
            .where(
                KnowledgeRow.id == row_id,
                KnowledgeRow.set_id == set_id,
                KnowledgeRow.content == content,
            )
            .values(embedding=blob)
            .execution_options(synchronize_session=False)
        )
        # An UPDATE's result is a cursor result: it has a row count.
        stored += cast(CursorResult[Any], result).rowcount
    return stored


async def _pending_count(session: AsyncSession, set_id: str) -> int:
    count = await session.scalar(
        select(func.count()).where(KnowledgeRow.set_id == set_id, KnowledgeRow.embedding.is_(None))
    )
    return int(count or 0)


async def _record_progress(
    session: AsyncSession, batch: EmbedBatch, *, stored: int, remaining: int
) -> int:
    """Adds this batch to the job (created by the first batch) and returns its done count;
    the total grows when rows arrive while the job runs."""
    job = await session.get(KnowledgeJob, batch.job_id)
    if job is None:
        job = KnowledgeJob(
            id=batch.job_id,
            project_id=batch.project_id,
            set_id=batch.set_id,
            kind=JobKind.embed.value,
            status=JobStatus.running.value,
            workflow_id=activity.info().workflow_id,
            done=0,
        )
        session.add(job)
    job.done += stored
    job.total = job.done + remaining
    job.status = JobStatus.running.value
    job.updated_at = utcnow()
    return job.done
