"""Lexical search over a set's rows, through the index migration 0006 made: FTS5 on SQLite,
a GIN index over `to_tsvector('english', content)` on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, column, func, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import RowFilter, SearchHit
from baton.knowledge.filters import filter_clause

# A search query beyond this many words is cut: more terms add cost, not relevance.
MAX_QUERY_TERMS = 64
_WORD = re.compile(r"\w+")
# The exact expression of PostgreSQL's GIN index: anything else would not use it.
_PG_CONFIG: ColumnElement[str] = literal_column("'english'")
# SQLite's FTS5 index over `knowledge_rows.content` (migration 0006), as much as queries need.
_FTS = table("knowledge_rows_fts", column("rowid", Integer))


def query_terms(query: str) -> list[str]:
    """The words of a user's query; only these reach the search engine, each as a plain term,
    so no query syntax (FTS5's NEAR, quotes, `*`; tsquery's `&`, `!`) can be written."""
    return _WORD.findall(query)[:MAX_QUERY_TERMS]


async def lexical_search(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    query: str,
    top_k: int,
    filters: Sequence[RowFilter] = (),
) -> list[SearchHit]:
    """Rows whose text shares words with `query`, best first; any word may match (OR), rows
    with more and rarer ones rank higher. A higher score is a better hit."""
    terms = query_terms(query)
    if not terms:
        return []
    where = and_(
        KnowledgeRow.set_id == knowledge_set.id,
        filter_clause(spec_of(knowledge_set), filters),
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = _postgres_search(terms, where, top_k)
    else:
        statement = _sqlite_search(terms, where, top_k)
    return [
        SearchHit(row_id=row_id, row=data, score=float(score))
        for row_id, data, score in await session.execute(statement)
    ]


def _sqlite_search(terms: list[str], where: ColumnElement[bool], top_k: int) -> Any:
    fts: ColumnElement[Any] = literal_column(_FTS.name)
    # Each word becomes an FTS5 string ("word"): words hold no quotes, so nothing escapes.
    expression = " OR ".join(f'"{term}"' for term in terms)
    # bm25() is lower-is-better and negative; its negation is the score.
    score = (-func.bm25(fts)).label("score")
    return (
        select(KnowledgeRow.id, KnowledgeRow.data, score)
        .select_from(_FTS)
        .join(KnowledgeRow, KnowledgeRow.id == _FTS.c.rowid)
        .where(fts.op("MATCH")(expression), where)
        .order_by(score.desc(), KnowledgeRow.id)
        .limit(top_k)
    )


def _postgres_search(terms: list[str], where: ColumnElement[bool], top_k: int) -> Any:
    vector = func.to_tsvector(_PG_CONFIG, KnowledgeRow.content)
    query: ColumnElement[Any] = func.plainto_tsquery(_PG_CONFIG, terms[0])
    for term in terms[1:]:
        query = query.op("||")(func.plainto_tsquery(_PG_CONFIG, term))
    score = func.ts_rank(vector, query).label("score")
    return (
        select(KnowledgeRow.id, KnowledgeRow.data, score)
        .where(vector.op("@@")(query), where)
        .order_by(score.desc(), KnowledgeRow.id)
        .limit(top_k)
    )
