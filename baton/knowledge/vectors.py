"""Nearest neighbours of a query vector among a set's rows, scored by cosine similarity
(higher is closer).

An exact scan with numpy over the set's vectors, kept in memory per process and reloaded only
when the set's vectors changed, so a query over 100,000 rows is one matrix product (a few ms),
on SQLite and PostgreSQL alike. sqlite-vec's `vec_distance_cosine` in SQL read every row's
blob on every query (about 50 times the cost at 100,000 rows), its `vec0` index cannot be kept
in step by triggers where this Python's SQLite loads no extensions (pyenv's default), and
pgvector is not installed everywhere PostgreSQL is."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import KnowledgeJob, KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import JobKind
from baton.knowledge.embeddings import Vectors, from_blob, normalized

# Sets whose vectors stay in memory at once (about 150 MB each at 100,000 x 384 floats).
CACHED_SETS = 4

Neighbour = tuple[int, float]


@dataclass(frozen=True)
class _Matrix:
    version: tuple[Any, ...]
    ids: NDArray[numpy.int64]
    vectors: Vectors


_matrices: OrderedDict[tuple[str, int], _Matrix] = OrderedDict()


async def nearest(
    *,
    session: AsyncSession,
    set_id: str,
    query: Vectors,
    top_k: int,
    where: ColumnElement[bool] | None = None,
) -> list[Neighbour]:
    """The `top_k` closest rows as (row id, cosine similarity), best first. Rows without a
    vector, or with one of another length (embedded by another model), are not candidates."""
    vector = normalized(query)[0]
    matrix = await _matrix(session, set_id, dimensions=len(vector))
    if not len(matrix.ids):
        return []
    scores = matrix.vectors @ vector
    if where is not None:
        allowed = (
            await session.scalars(
                select(KnowledgeRow.id).where(KnowledgeRow.set_id == set_id, where)
            )
        ).all()
        keep = numpy.isin(matrix.ids, numpy.fromiter(allowed, dtype=numpy.int64))
        scores = numpy.where(keep, scores, -numpy.inf)
    k = min(top_k, len(scores))
    best = numpy.argpartition(-scores, k - 1)[:k]
    best = best[numpy.argsort(-scores[best])]
    return [(int(matrix.ids[i]), float(scores[i])) for i in best if scores[i] != -numpy.inf]


async def _matrix(session: AsyncSession, set_id: str, *, dimensions: int) -> _Matrix:
    key = (set_id, dimensions)
    version = await _version(session, set_id)
    cached = _matrices.get(key)
    if cached is not None and cached.version == version:
        _matrices.move_to_end(key)
        return cached
    rows = (
        await session.execute(
            select(KnowledgeRow.id, KnowledgeRow.embedding)
            .where(
                KnowledgeRow.set_id == set_id,
                KnowledgeRow.embedding.is_not(None),
                func.length(KnowledgeRow.embedding) == dimensions * 4,
            )
            .order_by(KnowledgeRow.id)
        )
    ).all()
    ids = numpy.fromiter((row_id for row_id, _ in rows), dtype=numpy.int64, count=len(rows))
    # One buffer for all rows: 100,000 small arrays would cost more than the scan itself.
    packed = from_blob(b"".join(blob or b"" for _, blob in rows))
    vectors = normalized(packed.reshape(len(rows), dimensions))
    matrix = _Matrix(version=version, ids=ids, vectors=vectors)
    _matrices[key] = matrix
    _matrices.move_to_end(key)
    while len(_matrices) > CACHED_SETS:
        _matrices.popitem(last=False)
    return matrix


async def _version(session: AsyncSession, set_id: str) -> tuple[Any, ...]:
    """What changes whenever the set's vectors may have: vectors are written only by embed
    jobs (whose row moves with every batch), and a deleted row changes the set's row count.
    None of it scans the rows, so the check stays cheap at 100,000 rows. A row whose text
    changed keeps its old vector here until re-embedded; `search` drops it from the hits."""
    count = await session.scalar(select(KnowledgeSet.row_count).where(KnowledgeSet.id == set_id))
    last_id = await session.scalar(
        select(func.max(KnowledgeRow.id)).where(KnowledgeRow.set_id == set_id)
    )
    jobs = await session.execute(
        select(func.max(KnowledgeJob.updated_at), func.sum(KnowledgeJob.done)).where(
            KnowledgeJob.set_id == set_id, KnowledgeJob.kind == JobKind.embed.value
        )
    )
    return (count, last_id, *jobs.one())
