"""Starting (or nudging) a set's embedding after its rows changed.

The API's row routes and the knowledge steps of a tool run both call this. The workflow is
started and signalled by its registered names, so this library does not import the workflow
layer (tests/test_services.py checks them against `EmbedSetWorkflow`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from baton import temporal
from baton.db.tables import KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import (
    EmbeddingConfig,
    EmbeddingProvider,
    EmbedSetInput,
    embed_workflow_id,
)

logger = logging.getLogger("baton.embedding")

# The names workflows.knowledge.EmbedSetWorkflow is registered and signalled by.
EMBED_SET_WORKFLOW = "EmbedSetWorkflow"
ROWS_CHANGED_SIGNAL = "rows_changed"


async def embed_pending(client: Client, *, project_id: str, set_id: str, task_queue: str) -> None:
    """Makes sure the set's rows without a vector get one: starts the set's embedding run, or
    tells the running one to look again. Signal-with-start does both in one call and cannot
    race with a run that is just finishing."""
    await client.start_workflow(
        EMBED_SET_WORKFLOW,
        EmbedSetInput(project_id=project_id, set_id=set_id),
        id=embed_workflow_id(set_id),
        task_queue=task_queue,
        start_signal=ROWS_CHANGED_SIGNAL,
        search_attributes=temporal.run_search_attributes(
            project_id=project_id, kind="knowledge-embed", status="running"
        ),
        static_summary=f"embed knowledge set {set_id}",
    )


@dataclass(frozen=True)
class RowChanges:
    """What a route calls after it added or changed rows, so they get their vectors."""

    client: Client
    task_queue: str

    async def embed(self, session: AsyncSession, knowledge_set: KnowledgeSet) -> None:
        """Commits the rows first (the embedding run must see them), then has them embedded
        when the set has a provider. Temporal being down does not undo the rows: they are
        embedded with the set's next change."""
        config = EmbeddingConfig.model_validate(knowledge_set.embedding or {})
        if config.provider is EmbeddingProvider.none:
            return
        await session.commit()
        try:
            await embed_pending(
                self.client,
                project_id=knowledge_set.project_id,
                set_id=knowledge_set.id,
                task_queue=self.task_queue,
            )
        except (RPCError, RuntimeError) as exc:
            logger.warning("could not start embedding set %s: %s", knowledge_set.id, exc)


async def resume_pending(
    client: Client, session_factory: async_sessionmaker[AsyncSession], *, task_queue: str
) -> int:
    """Starts embedding every set whose rows wait for a vector (rows imported while its
    provider could not run here, or while Temporal was down): what a worker does when it
    starts. The number of sets it started."""
    async with session_factory() as session:
        waiting = await session.scalars(
            select(KnowledgeSet).where(
                select(KnowledgeRow.id)
                .where(KnowledgeRow.set_id == KnowledgeSet.id, KnowledgeRow.embedding.is_(None))
                .exists()
            )
        )
        sets = [
            knowledge_set
            for knowledge_set in waiting.all()
            if EmbeddingConfig.model_validate(knowledge_set.embedding or {}).provider
            is not EmbeddingProvider.none
        ]
    for knowledge_set in sets:
        await embed_pending(
            client,
            project_id=knowledge_set.project_id,
            set_id=knowledge_set.id,
            task_queue=task_queue,
        )
    return len(sets)
