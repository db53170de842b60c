"""Starting (or nudging) a set's embedding after its rows changed, and the embedders the API
uses for query vectors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from activities.llm import project_provider_configs
from baton import temporal
from baton.db.tables import KnowledgeSet
from baton.domain.knowledge import EmbeddingConfig, EmbeddingProvider
from baton.knowledge.embeddings import EmbedderFactory
from workflows.knowledge import EmbedSetInput, EmbedSetWorkflow, embed_workflow_id

logger = logging.getLogger("baton.api")


async def embed_pending(client: Client, *, project_id: str, set_id: str, task_queue: str) -> None:
    """Makes sure the set's rows without a vector get one: starts the set's embedding run, or
    tells the running one to look again. Signal-with-start does both in one call and cannot
    race with a run that is just finishing."""
    await client.start_workflow(
        EmbedSetWorkflow.run,
        EmbedSetInput(project_id=project_id, set_id=set_id),
        id=embed_workflow_id(set_id),
        task_queue=task_queue,
        start_signal="rows_changed",
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


def get_row_changes(request: Request) -> RowChanges:
    state = request.app.state
    return RowChanges(client=state.temporal, task_queue=state.settings.temporal_task_queue)


def get_embedders(request: Request) -> EmbedderFactory:
    """One factory per app, so the local model it holds loads once, on the first query."""
    state = request.app.state
    if getattr(state, "embedders", None) is None:
        state.embedders = EmbedderFactory(
            project_provider_configs(state.session_factory, state.settings)
        )
    embedders: EmbedderFactory = state.embedders
    return embedders


EmbeddersDep = Annotated[EmbedderFactory, Depends(get_embedders)]
RowChangesDep = Annotated[RowChanges, Depends(get_row_changes)]
