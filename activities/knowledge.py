"""Embedding a set's rows: a batch of rows without a vector at a time, progress kept in the
set's embed job. Rows and vectors stay in the database; only counts go through history."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import as_application_error
from activities.llm import provider_failure
from baton.db.repositories import knowledge_jobs as job_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.domain.knowledge import EmbedBatch, EmbedBatchResult, EmbedJobEnd
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
                knowledge_set = await set_repo.get_set(
                    session=session, project_id=batch.project_id, set_id=batch.set_id
                )
                pending = await row_repo.rows_to_embed(
                    session=session, set_id=batch.set_id, limit=batch.batch_size
                )
            embedder = await self._embedders(knowledge_set)
            vectors = await embedder.embed([content for _, content in pending])
        except NotFound:
            raise as_application_error(
                NotFound(f"knowledge set {batch.set_id} was deleted")
            ) from None
        except ProviderError as exc:
            raise provider_failure(exc) from None
        except BatonError as exc:
            raise as_application_error(exc) from exc
        async with self._sessions.begin() as session:
            stored = await row_repo.store_vectors(
                session=session,
                set_id=batch.set_id,
                vectors=[
                    (row_id, content, to_blob(v))
                    for (row_id, content), v in zip(pending, vectors, strict=True)
                ],
            )
            remaining = await row_repo.count_to_embed(session=session, set_id=batch.set_id)
            done = await job_repo.add_embedded(
                session=session,
                batch=batch,
                workflow_id=activity.info().workflow_id,
                stored=stored,
                remaining=remaining,
            )
        return EmbedBatchResult(embedded=stored, remaining=remaining, done=done)

    @activity.defn(name="baton.knowledge.embed_finish")
    async def finish(self, end: EmbedJobEnd) -> None:
        """The job's final status (see knowledge_jobs.finish_embed_job)."""
        async with self._sessions.begin() as session:
            await job_repo.finish_embed_job(
                session=session, end=end, workflow_id=activity.info().workflow_id
            )
