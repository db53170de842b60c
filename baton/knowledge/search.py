"""Searching a set: lexical, vector, or both fused by reciprocal rank.

A search that names no mode is hybrid on a set with an embedding provider and lexical on one
without. Asked for `vector` or `hybrid`, a set without an embedding provider refuses with a
clear error rather than quietly answering with words only: a caller who asked for meaning
learns it cannot have it. Rows not embedded yet are found lexically only."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import (
    EmbeddingConfig,
    EmbeddingProvider,
    SearchHit,
    SearchMode,
    SearchRequest,
)
from baton.errors import InvalidInput
from baton.knowledge import lexical, rerank, vectors
from baton.knowledge.embeddings import EmbedderFor
from baton.knowledge.filters import filter_clause
from baton.knowledge.rerank import Rerankers

# Reciprocal rank fusion: a row's fused score is the sum of 1 / (RRF_K + rank) over the lists
# it appears in; 60 is the constant of the original paper and of most search engines.
RRF_K = 60
# How deep each list is read before fusing, as a multiple of top_k.
HYBRID_DEPTH = 4
# For callers that pass no rerankers: the local one (and its passage cache) per process.
LOCAL_ONLY = Rerankers()


async def search(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    request: SearchRequest,
    embedder_for: EmbedderFor,
    rerankers: Rerankers | None = None,
) -> list[SearchHit]:
    """The set's best `top_k` rows for the request; with `rerank`, the best of its first
    `rerank.candidates` (at least top_k) by the reranker."""
    if request.rerank is None:
        return await _first_pass(session, knowledge_set, request, embedder_for)
    depth = max(request.rerank.candidates, request.top_k)
    candidates = await _first_pass(
        session, knowledge_set, request.model_copy(update={"top_k": depth}), embedder_for
    )
    return await rerank.reranked(
        knowledge_set=knowledge_set,
        query=request.query,
        candidates=candidates,
        options=request.rerank,
        top_k=request.top_k,
        rerankers=rerankers or LOCAL_ONLY,
    )


async def _first_pass(
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    request: SearchRequest,
    embedder_for: EmbedderFor,
) -> list[SearchHit]:
    provider = EmbeddingConfig.model_validate(knowledge_set.embedding or {}).provider
    # No mode asked: hybrid where the set has vectors, lexical where it cannot.
    mode = request.mode or (
        SearchMode.lexical if provider is EmbeddingProvider.none else SearchMode.hybrid
    )
    if mode is SearchMode.lexical:
        return await _lexical(session, knowledge_set, request, request.top_k)
    if provider is EmbeddingProvider.none:
        raise InvalidInput(
            f"{mode.value} search needs an embedding provider on the set "
            f"{knowledge_set.name!r}: set its embedding to local or openai, or search in "
            "lexical mode",
            details=[{"field": "mode", "message": "the set has no embedding provider"}],
        )
    if mode is SearchMode.vector:
        neighbours = await _vector(session, knowledge_set, request, request.top_k, embedder_for)
        rows = await _embedded_rows(session, knowledge_set.id, [i for i, _ in neighbours])
        return [
            SearchHit(row_id=row_id, row=rows[row_id], score=score)
            for row_id, score in neighbours
            if row_id in rows
        ]
    return await _hybrid(session, knowledge_set, request, embedder_for)


async def _hybrid(
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    request: SearchRequest,
    embedder_for: EmbedderFor,
) -> list[SearchHit]:
    depth = request.top_k * HYBRID_DEPTH
    lexical = await _lexical(session, knowledge_set, request, depth)
    neighbours = await _vector(session, knowledge_set, request, depth, embedder_for)
    embedded = await _embedded_rows(session, knowledge_set.id, [i for i, _ in neighbours])
    by_vector = [row_id for row_id, _ in neighbours if row_id in embedded]
    fused = reciprocal_rank_fusion([[hit.row_id for hit in lexical], by_vector])
    rows = {**embedded, **{hit.row_id: hit.row for hit in lexical}}
    return [
        SearchHit(row_id=row_id, row=rows[row_id], score=score)
        for row_id, score in fused[: request.top_k]
    ]


def reciprocal_rank_fusion(rankings: list[list[int]]) -> list[tuple[int, float]]:
    """Ids by fused score, best first; ties keep the order of first appearance."""
    scores: defaultdict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, row_id in enumerate(ranking, start=1):
            scores[row_id] += 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


async def _lexical(
    session: AsyncSession, knowledge_set: KnowledgeSet, request: SearchRequest, top_k: int
) -> list[SearchHit]:
    return await lexical.lexical_search(
        session=session,
        knowledge_set=knowledge_set,
        query=request.query,
        top_k=top_k,
        filters=request.filters,
    )


async def _vector(
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    request: SearchRequest,
    top_k: int,
    embedder_for: EmbedderFor,
) -> list[vectors.Neighbour]:
    embedder = await embedder_for(knowledge_set)
    query = await embedder.embed([request.query])
    where = filter_clause(spec_of(knowledge_set), request.filters) if request.filters else None
    return await vectors.nearest(
        session=session, set_id=knowledge_set.id, query=query, top_k=top_k, where=where
    )


async def _embedded_rows(
    session: AsyncSession, set_id: str, row_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """The data of those rows that still have a vector: a row whose text changed since its
    vector was cached is left out until it is embedded again."""
    if not row_ids:
        return {}
    rows = await session.execute(
        select(KnowledgeRow.id, KnowledgeRow.data).where(
            KnowledgeRow.set_id == set_id,
            KnowledgeRow.id.in_(row_ids),
            KnowledgeRow.embedding.is_not(None),
        )
    )
    return {row_id: data for row_id, data in rows.all()}
