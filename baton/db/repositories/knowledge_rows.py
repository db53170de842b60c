"""Knowledge rows: a set's JSON rows, the text search sees (`content`) and its vector.

Every write of `knowledge_rows` is here: the API's edits and imports (validated first, in
baton/knowledge/store.py), an enrichment's outputs and the embedding activity's vectors. A
row whose text changes loses its vector, whoever changed it, so it is embedded again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import KnowledgeRow, utcnow
from baton.domain.knowledge import KnowledgeColumn, row_content
from baton.errors import NotFound

# Rows are read and rewritten this many at a time (content recomputation, export).
BATCH_ROWS = 1000


@dataclass(frozen=True)
class RowResult:
    """What one row's enrichment run gave: its new column values, or the error to record."""

    row_id: int
    values: dict[str, Any]
    failed: bool


@dataclass(frozen=True)
class RowSource:
    """Where a synced source's rows came from: the source, the key and the key's hash."""

    source_id: str
    key: str
    hash: str


async def insert_rows(
    *,
    session: AsyncSession,
    set_id: str,
    columns: list[KnowledgeColumn],
    rows: Sequence[dict[str, Any]],
    source: RowSource | None = None,
) -> list[int]:
    """Inserts rows already checked against the set, in one statement; their ids in order.
    Vectors are left to the embedding activity (NULL means "to embed")."""
    if not rows:
        return []
    now = utcnow()
    values = [
        {
            "set_id": set_id,
            "data": data,
            "content": row_content(columns, data),
            "embedding": None,
            "created_at": now,
            "updated_at": now,
            "source_id": source and source.source_id,
            "source_key": source and source.key,
            "source_hash": source and source.hash,
        }
        for data in rows
    ]
    statement = insert(KnowledgeRow).returning(KnowledgeRow.id, sort_by_parameter_order=True)
    return list((await session.scalars(statement, values)).all())


async def get_row(*, session: AsyncSession, set_id: str, row_id: int) -> KnowledgeRow:
    row = await session.get(KnowledgeRow, row_id)
    if row is None or row.set_id != set_id:
        raise NotFound(f"row {row_id} not found in knowledge set {set_id}")
    return row


async def save_row(
    *,
    session: AsyncSession,
    row: KnowledgeRow,
    data: dict[str, Any],
    columns: list[KnowledgeColumn],
) -> None:
    content = row_content(columns, data)
    if content != row.content:
        row.content = content
        row.embedding = None
    row.data = data
    row.updated_at = utcnow()
    await session.flush()


async def delete_row(*, session: AsyncSession, row: KnowledgeRow) -> None:
    await session.delete(row)
    await session.flush()


async def delete_set_rows(*, session: AsyncSession, set_id: str) -> None:
    # Rows go by a statement of their own, before their set, so SQLite's FTS triggers see
    # each delete.
    await session.execute(delete(KnowledgeRow).where(KnowledgeRow.set_id == set_id))


async def list_rows(
    *,
    session: AsyncSession,
    set_id: str,
    where: ColumnElement[bool],
    limit: int,
    after_id: int | None,
) -> tuple[list[KnowledgeRow], int | None]:
    """One page in id order and the cursor of the next (`None` on the last page)."""
    query = (
        select(KnowledgeRow)
        .where(KnowledgeRow.set_id == set_id, KnowledgeRow.id > (after_id or 0), where)
        .order_by(KnowledgeRow.id)
        .limit(limit + 1)
    )
    rows = list((await session.scalars(query)).all())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def data_batches(
    *, session: AsyncSession, set_id: str
) -> AsyncIterator[list[tuple[int, dict[str, Any], str]]]:
    """Every row as (id, data, content), BATCH_ROWS at a time in id order."""
    after_id = 0
    while True:
        query = (
            select(KnowledgeRow.id, KnowledgeRow.data, KnowledgeRow.content)
            .where(KnowledgeRow.set_id == set_id, KnowledgeRow.id > after_id)
            .order_by(KnowledgeRow.id)
            .limit(BATCH_ROWS)
        )
        batch = [(row_id, data, content) for row_id, data, content in await session.execute(query)]
        if not batch:
            return
        yield batch
        after_id = batch[-1][0]


async def recompute_content(
    *, session: AsyncSession, set_id: str, columns: list[KnowledgeColumn]
) -> None:
    """Rewrites each row's text for the set's new searchable columns."""
    async for batch in data_batches(session=session, set_id=set_id):
        changes = [
            {"id": row_id, "content": content, "embedding": None, "updated_at": utcnow()}
            for row_id, data, old in batch
            if (content := row_content(columns, data)) != old
        ]
        if changes:
            await session.execute(update(KnowledgeRow), changes)


async def drop_vectors(*, session: AsyncSession, set_id: str) -> None:
    await session.execute(
        update(KnowledgeRow)
        .where(KnowledgeRow.set_id == set_id)
        .values(embedding=None)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------------------------------------
# Enrichment


async def row_span(*, session: AsyncSession, set_id: str) -> tuple[int, int]:
    """(row count, highest row id) of the set now: a job covers exactly these rows."""
    count, highest = (
        await session.execute(
            select(func.count(KnowledgeRow.id), func.max(KnowledgeRow.id)).where(
                KnowledgeRow.set_id == set_id
            )
        )
    ).one()
    return int(count), int(highest or 0)


async def read_batch(
    *, session: AsyncSession, set_id: str, after_row_id: int, last_row_id: int, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    query = (
        select(KnowledgeRow.id, KnowledgeRow.data)
        .where(
            KnowledgeRow.set_id == set_id,
            KnowledgeRow.id > after_row_id,
            KnowledgeRow.id <= last_row_id,
        )
        .order_by(KnowledgeRow.id)
        .limit(limit)
    )
    return [(row_id, data) for row_id, data in (await session.execute(query)).all()]


async def write_results(
    *,
    session: AsyncSession,
    set_id: str,
    columns: list[KnowledgeColumn],
    results: list[RowResult],
) -> None:
    """Merges each result into its row as it is now (a concurrent edit of another column is
    kept) and recomputes the row's search text; a changed text drops its stale vector."""
    if not results:
        return
    current = await session.execute(
        select(KnowledgeRow.id, KnowledgeRow.data, KnowledgeRow.content).where(
            KnowledgeRow.set_id == set_id,
            KnowledgeRow.id.in_([result.row_id for result in results]),
        )
    )
    rows = {row_id: (data, content) for row_id, data, content in current.all()}
    now = utcnow()
    changes: list[dict[str, Any]] = []
    for result in results:
        if result.row_id not in rows:
            continue  # deleted meanwhile
        data, content = rows[result.row_id]
        # As a row update does: a null value removes the column.
        merged = {
            key: value for key, value in {**data, **result.values}.items() if value is not None
        }
        change: dict[str, Any] = {"id": result.row_id, "data": merged, "updated_at": now}
        new_content = row_content(columns, merged)
        if new_content != content:
            change.update(content=new_content, embedding=None)
        changes.append(change)
    if changes:
        await session.execute(update(KnowledgeRow), changes)


# ---------------------------------------------------------------------------------------------
# Embedding


async def rows_to_embed(*, session: AsyncSession, set_id: str, limit: int) -> list[tuple[int, str]]:
    """Up to `limit` rows without a vector, as (id, content), in id order."""
    pending = await session.execute(
        select(KnowledgeRow.id, KnowledgeRow.content)
        .where(KnowledgeRow.set_id == set_id, KnowledgeRow.embedding.is_(None))
        .order_by(KnowledgeRow.id)
        .limit(limit)
    )
    return [(row_id, content) for row_id, content in pending.all()]


async def store_vectors(
    *, session: AsyncSession, set_id: str, vectors: list[tuple[int, str, bytes]]
) -> int:
    """Stores each (row id, embedded text, vector) if the row's text is still the one
    embedded, so an edit made meanwhile is embedded next; how many it stored."""
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


async def count_to_embed(*, session: AsyncSession, set_id: str) -> int:
    count = await session.scalar(
        select(func.count()).where(KnowledgeRow.set_id == set_id, KnowledgeRow.embedding.is_(None))
    )
    return int(count or 0)


async def matching_row_ids(
    *, session: AsyncSession, set_id: str, where: ColumnElement[bool]
) -> list[int]:
    """The ids of the set's rows that `where` picks, in id order (a bulk run's rows)."""
    query = (
        select(KnowledgeRow.id)
        .where(KnowledgeRow.set_id == set_id, where)
        .order_by(KnowledgeRow.id)
    )
    return list((await session.scalars(query)).all())


async def row_data(*, session: AsyncSession, set_id: str, row_ids: Sequence[int]) -> dict[int, Any]:
    """The data of those of `row_ids` the set still has."""
    query = select(KnowledgeRow.id, KnowledgeRow.data).where(
        KnowledgeRow.set_id == set_id, KnowledgeRow.id.in_(row_ids)
    )
    return {row_id: data for row_id, data in (await session.execute(query)).all()}
