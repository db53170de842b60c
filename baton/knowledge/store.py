"""Knowledge sets and their rows as the API and tool steps change them: every row checked
against its set's declared columns, the set's row count kept, and a change of a set's
columns or embedding carried to its rows. The tables are written by their repositories
(baton/db/repositories/knowledge_sets.py, knowledge_rows.py, knowledge_jobs.py); filters,
lexical search and CSV export are modules of their own in this package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import ColumnType, KnowledgeSetSpec, RowFilter
from baton.domain.storable import UNSTORABLE_TEXT, first_unstorable
from baton.errors import InvalidInput
from baton.knowledge.filters import filter_clause

# ---------------------------------------------------------------------------------------------
# Sets


async def update_set(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, spec: KnowledgeSetSpec
) -> KnowledgeSet:
    """Saves `spec` over the set. Once the set has rows its declared columns may be added to
    and described differently, never removed or retyped: the rows would stop matching them.
    A change of searchable columns recomputes every row's text; a new embedding provider or
    model drops the vectors made by the old one."""
    old = spec_of(knowledge_set)
    if knowledge_set.row_count:
        _check_columns_keep_rows(old, spec)
    await set_repo.save_spec(session=session, knowledge_set=knowledge_set, spec=spec)
    if _searchable(old) != _searchable(spec):
        await row_repo.recompute_content(
            session=session, set_id=knowledge_set.id, columns=spec.columns
        )
    if old.embedding != spec.embedding:
        await row_repo.drop_vectors(session=session, set_id=knowledge_set.id)
    return knowledge_set


async def delete_set(*, session: AsyncSession, knowledge_set: KnowledgeSet) -> None:
    await row_repo.delete_set_rows(session=session, set_id=knowledge_set.id)
    await set_repo.delete_set(session=session, knowledge_set=knowledge_set)


def _check_columns_keep_rows(old: KnowledgeSetSpec, new: KnowledgeSetSpec) -> None:
    if not old.columns and new.columns:
        raise InvalidInput(
            "this set has rows and no declared columns; declare columns on an empty set",
            details=[{"field": "columns"}],
        )
    for declared in old.columns:
        kept = new.column(declared.name)
        if kept is None:
            raise InvalidInput(
                f"column {declared.name!r} cannot be removed: the set has rows",
                details=[{"field": "columns", "column": declared.name}],
            )
        if kept.type is not declared.type:
            raise InvalidInput(
                f"column {declared.name!r} cannot change type ({declared.type.value} to "
                f"{kept.type.value}): the set has rows",
                details=[{"field": "columns", "column": declared.name}],
            )


def _searchable(spec: KnowledgeSetSpec) -> list[tuple[str, bool]]:
    return [(c.name, c.searchable and c.type is ColumnType.text) for c in spec.columns]


# ---------------------------------------------------------------------------------------------
# Rows


async def insert_rows(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    rows: list[dict[str, Any]],
    first_row: int = 1,
    source: row_repo.RowSource | None = None,
) -> list[int]:
    """Checks every row, then inserts them in one statement; returns their ids in order.
    Errors number the rows from `first_row` (an import's batch says where it is in the file).
    `source` marks rows a synced source wrote."""
    if not rows:
        return []
    spec = spec_of(knowledge_set)
    for index, data in enumerate(rows, start=first_row):
        _check_row(spec, data, where=f"row {index}")
    ids = await row_repo.insert_rows(
        session=session,
        set_id=knowledge_set.id,
        columns=spec.columns,
        rows=rows,
        source=source,
    )
    await set_repo.count_rows(session=session, knowledge_set=knowledge_set, delta=len(ids))
    return ids


async def get_row(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, row_id: int
) -> KnowledgeRow:
    return await row_repo.get_row(session=session, set_id=knowledge_set.id, row_id=row_id)


async def update_row(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    row_id: int,
    data: dict[str, Any],
    merge: bool = True,
) -> KnowledgeRow:
    """`merge` keeps the columns `data` does not name (a null value removes one); otherwise
    `data` replaces the row. A row whose text changed loses its vector until re-embedded."""
    row = await get_row(session=session, knowledge_set=knowledge_set, row_id=row_id)
    spec = spec_of(knowledge_set)
    new_data = {**row.data, **data} if merge else dict(data)
    new_data = {key: value for key, value in new_data.items() if value is not None}
    _check_row(spec, new_data, where=f"row {row_id}")
    await row_repo.save_row(session=session, row=row, data=new_data, columns=spec.columns)
    return row


async def delete_row(*, session: AsyncSession, knowledge_set: KnowledgeSet, row_id: int) -> None:
    row = await get_row(session=session, knowledge_set=knowledge_set, row_id=row_id)
    await row_repo.delete_row(session=session, row=row)
    await set_repo.count_rows(session=session, knowledge_set=knowledge_set, delta=-1)


async def list_rows(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    filters: Sequence[RowFilter] = (),
    limit: int = 100,
    after_id: int | None = None,
) -> tuple[list[KnowledgeRow], int | None]:
    """One page in id order and the cursor of the next (`None` on the last page)."""
    return await row_repo.list_rows(
        session=session,
        set_id=knowledge_set.id,
        where=filter_clause(spec_of(knowledge_set), filters),
        limit=limit,
        after_id=after_id,
    )


_PYTHON_TYPES: dict[ColumnType, tuple[type, ...]] = {
    ColumnType.text: (str,),
    ColumnType.number: (int, float),
    ColumnType.integer: (int,),
    ColumnType.boolean: (bool,),
}


def _check_row(spec: KnowledgeSetSpec, data: Any, *, where: str) -> None:
    """A row of a set with declared columns names only those columns, each with a value of
    its type (or null); a set without columns takes any JSON object."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} is not a JSON object")
    bad = first_unstorable(data)
    if bad is not None:
        field = ".".join(map(str, bad)) or "a key"
        raise InvalidInput(
            f"{where}, {field}: {UNSTORABLE_TEXT}", details=[{"field": field, "row": where}]
        )
    if not spec.columns:
        return
    for name, value in data.items():
        column = spec.column(name)
        if column is None:
            known = ", ".join(c.name for c in spec.columns)
            raise InvalidInput(
                f"{where}: unknown column {name!r} (the set's columns: {known})",
                details=[{"field": name, "row": where}],
            )
        expected = _PYTHON_TYPES.get(column.type)
        if value is None or expected is None:
            continue
        is_bool = isinstance(value, bool)
        if not isinstance(value, expected) or (is_bool and column.type is not ColumnType.boolean):
            raise InvalidInput(
                f"{where}: column {name!r} is {column.type.value}, got {type(value).__name__}",
                details=[{"field": name, "row": where}],
            )
