"""Knowledge sets: a project's tables, their declared columns, embedding and row count.

What a change to a set means for its rows (recomputed text, dropped vectors) is decided in
baton/knowledge/store.py; this module writes only `knowledge_sets`."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import KnowledgeSet, utcnow
from baton.domain.knowledge import (
    EmbeddingConfig,
    EmbeddingProvider,
    KnowledgeColumn,
    KnowledgeSetSpec,
)
from baton.errors import Conflict, NotFound


def spec_of(knowledge_set: KnowledgeSet) -> KnowledgeSetSpec:
    return KnowledgeSetSpec(
        name=knowledge_set.name,
        description=knowledge_set.description,
        columns=[KnowledgeColumn.model_validate(c) for c in knowledge_set.columns],
        embedding=EmbeddingConfig.model_validate(knowledge_set.embedding or {}),
    )


async def create_set(
    *, session: AsyncSession, project_id: str, spec: KnowledgeSetSpec
) -> KnowledgeSet:
    await _check_name_free(session, project_id, spec.name)
    knowledge_set = KnowledgeSet(project_id=project_id, row_count=0)
    _apply_spec(knowledge_set, spec)
    session.add(knowledge_set)
    await _flush_unique(session, spec.name)
    return knowledge_set


async def get_set(*, session: AsyncSession, project_id: str, set_id: str) -> KnowledgeSet:
    knowledge_set = await session.get(KnowledgeSet, set_id)
    if knowledge_set is None or knowledge_set.project_id != project_id:
        raise NotFound(f"knowledge set {set_id} not found")
    return knowledge_set


async def list_sets(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[KnowledgeSet]:
    query = select(KnowledgeSet).where(KnowledgeSet.project_id == project_id)
    order = (KnowledgeSet.created_at, KnowledgeSet.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def set_columns(*, session: AsyncSession, set_id: str) -> list[KnowledgeColumn]:
    found = await session.get(KnowledgeSet, set_id)
    if found is None:
        raise NotFound(f"knowledge set {set_id} not found")
    return [KnowledgeColumn.model_validate(column) for column in found.columns]


async def save_spec(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, spec: KnowledgeSetSpec
) -> None:
    """Writes `spec` over the set; a new name must be free in the project."""
    if spec.name != knowledge_set.name:
        await _check_name_free(session, knowledge_set.project_id, spec.name)
    _apply_spec(knowledge_set, spec)
    knowledge_set.updated_at = utcnow()
    await _flush_unique(session, spec.name)


async def delete_set(*, session: AsyncSession, knowledge_set: KnowledgeSet) -> None:
    await session.delete(knowledge_set)
    await session.flush()


async def count_rows(*, session: AsyncSession, knowledge_set: KnowledgeSet, delta: int) -> None:
    """Adds `delta` to the set's row count."""
    # Added in SQL, not read-modify-write, so two imports into one set both count.
    await session.execute(
        update(KnowledgeSet)
        .where(KnowledgeSet.id == knowledge_set.id)
        .values(row_count=KnowledgeSet.row_count + delta, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )


def _apply_spec(knowledge_set: KnowledgeSet, spec: KnowledgeSetSpec) -> None:
    knowledge_set.name = spec.name
    knowledge_set.description = spec.description
    knowledge_set.columns = [c.model_dump(mode="json") for c in spec.columns]
    # {} is "no provider", as the table documents.
    none = spec.embedding.provider is EmbeddingProvider.none
    knowledge_set.embedding = {} if none else spec.embedding.model_dump(mode="json")


async def _check_name_free(session: AsyncSession, project_id: str, name: str) -> None:
    query = select(KnowledgeSet.id).where(
        KnowledgeSet.project_id == project_id, KnowledgeSet.name == name
    )
    if await session.scalar(query) is not None:
        raise _name_taken(name)


async def _flush_unique(session: AsyncSession, name: str) -> None:
    """The unique constraint still decides when two requests race past the check."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _name_taken(name) from exc


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a knowledge set named {name!r} already exists", details=[{"field": "name"}])
