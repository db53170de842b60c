"""Knowledge sets and their rows in the database: CRUD, typed validation, filters, lexical
search and CSV export.

Row values live in a JSON column, so filters reach into it per dialect; every value a user
gives is a bound parameter, never SQL text. Lexical search uses the index migration 0006 made:
FTS5 on SQLite, a GIN index over `to_tsvector('english', content)` on PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    case,
    column,
    delete,
    false,
    func,
    insert,
    literal_column,
    not_,
    select,
    table,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import KnowledgeJob, KnowledgeRow, KnowledgeSet, utcnow
from baton.domain.knowledge import (
    ColumnType,
    EmbeddingConfig,
    EmbeddingProvider,
    FilterOp,
    JobKind,
    JobStatus,
    KnowledgeColumn,
    KnowledgeSetSpec,
    RowFilter,
    SearchHit,
    row_content,
)
from baton.domain.storable import UNSTORABLE_TEXT, first_unstorable
from baton.errors import Conflict, InvalidInput, NotFound

# Rows are read and rewritten this many at a time (content recomputation, export).
BATCH_ROWS = 1000
# A search query beyond this many words is cut: more terms add cost, not relevance.
MAX_QUERY_TERMS = 64
_WORD = re.compile(r"\w+")
# The exact expression of PostgreSQL's GIN index: anything else would not use it.
_PG_CONFIG: ColumnElement[str] = literal_column("'english'")
# SQLite's FTS5 index over `knowledge_rows.content` (migration 0006), as much as queries need.
_FTS = table("knowledge_rows_fts", column("rowid", Integer))


# ---------------------------------------------------------------------------------------------
# Sets


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


async def update_set(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, spec: KnowledgeSetSpec
) -> KnowledgeSet:
    """Saves `spec` over the set. Once the set has rows its declared columns may be added to
    and described differently, never removed or retyped: the rows would stop matching them.
    A change of searchable columns recomputes every row's text; a new embedding provider or
    model drops the vectors made by the old one."""
    old = spec_of(knowledge_set)
    if spec.name != old.name:
        await _check_name_free(session, knowledge_set.project_id, spec.name)
    if knowledge_set.row_count:
        _check_columns_keep_rows(old, spec)
    _apply_spec(knowledge_set, spec)
    knowledge_set.updated_at = utcnow()
    await _flush_unique(session, spec.name)
    if _searchable(old) != _searchable(spec):
        await _recompute_content(session, knowledge_set, spec.columns)
    if old.embedding != spec.embedding:
        await session.execute(
            update(KnowledgeRow)
            .where(KnowledgeRow.set_id == knowledge_set.id)
            .values(embedding=None)
            .execution_options(synchronize_session=False)
        )
    return knowledge_set


async def delete_set(*, session: AsyncSession, knowledge_set: KnowledgeSet) -> None:
    # Rows go first and by name so SQLite's FTS triggers see each delete.
    await session.execute(delete(KnowledgeRow).where(KnowledgeRow.set_id == knowledge_set.id))
    await session.delete(knowledge_set)
    await session.flush()


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


async def _recompute_content(
    session: AsyncSession, knowledge_set: KnowledgeSet, columns: list[KnowledgeColumn]
) -> None:
    after_id = 0
    while True:
        query = (
            select(KnowledgeRow.id, KnowledgeRow.data, KnowledgeRow.content)
            .where(KnowledgeRow.set_id == knowledge_set.id, KnowledgeRow.id > after_id)
            .order_by(KnowledgeRow.id)
            .limit(BATCH_ROWS)
        )
        batch = (await session.execute(query)).all()
        if not batch:
            return
        changes = [
            {"id": row_id, "content": content, "embedding": None, "updated_at": utcnow()}
            for row_id, data, old in batch
            if (content := row_content(columns, data)) != old
        ]
        if changes:
            await session.execute(update(KnowledgeRow), changes)
        after_id = batch[-1][0]


# ---------------------------------------------------------------------------------------------
# Rows


async def insert_rows(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    rows: list[dict[str, Any]],
    first_row: int = 1,
) -> list[int]:
    """Validates every row, then inserts them in one statement; returns their ids in order.
    Errors number the rows from `first_row` (an import's batch says where it is in the file).
    Vectors are left to the embedding activity (NULL means "to embed")."""
    if not rows:
        return []
    spec = spec_of(knowledge_set)
    for index, data in enumerate(rows, start=first_row):
        _check_row(spec, data, where=f"row {index}")
    now = utcnow()
    values = [
        {
            "set_id": knowledge_set.id,
            "data": data,
            "content": row_content(spec.columns, data),
            "embedding": None,
            "created_at": now,
            "updated_at": now,
        }
        for data in rows
    ]
    statement = insert(KnowledgeRow).returning(KnowledgeRow.id, sort_by_parameter_order=True)
    ids = list((await session.scalars(statement, values)).all())
    await _count_rows(session, knowledge_set, len(ids))
    return ids


async def get_row(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, row_id: int
) -> KnowledgeRow:
    row = await session.get(KnowledgeRow, row_id)
    if row is None or row.set_id != knowledge_set.id:
        raise NotFound(f"row {row_id} not found in knowledge set {knowledge_set.id}")
    return row


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
    content = row_content(spec.columns, new_data)
    if content != row.content:
        row.content = content
        row.embedding = None
    row.data = new_data
    row.updated_at = utcnow()
    await session.flush()
    return row


async def delete_row(*, session: AsyncSession, knowledge_set: KnowledgeSet, row_id: int) -> None:
    row = await get_row(session=session, knowledge_set=knowledge_set, row_id=row_id)
    await session.delete(row)
    await session.flush()
    await _count_rows(session, knowledge_set, -1)


async def list_rows(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    filters: Sequence[RowFilter] = (),
    limit: int = 100,
    after_id: int | None = None,
) -> tuple[list[KnowledgeRow], int | None]:
    """One page in id order and the cursor of the next (`None` on the last page)."""
    query = (
        select(KnowledgeRow)
        .where(
            KnowledgeRow.set_id == knowledge_set.id,
            KnowledgeRow.id > (after_id or 0),
            filter_clause(spec_of(knowledge_set), filters),
        )
        .order_by(KnowledgeRow.id)
        .limit(limit + 1)
    )
    rows = list((await session.scalars(query)).all())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def _count_rows(session: AsyncSession, knowledge_set: KnowledgeSet, delta: int) -> None:
    # Added in SQL, not read-modify-write, so two imports into one set both count.
    await session.execute(
        update(KnowledgeSet)
        .where(KnowledgeSet.id == knowledge_set.id)
        .values(row_count=KnowledgeSet.row_count + delta, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
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


# ---------------------------------------------------------------------------------------------
# Filters


class _json_is(FunctionElement[bool]):
    """Whether `data`'s value under a key is of a JSON kind, named one way on both dialects.

    The kind is one of a fixed set chosen by code; the key is a bound parameter. Never NULL:
    a missing key is simply not of the kind, so `NOT` of it holds."""

    inherit_cache = True
    # The kind changes the SQL, so it is part of the statement cache key.
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("kind", InternalTraversal.dp_string),
    ]
    type = Boolean()

    def __init__(self, key: str, kind: str) -> None:
        if kind not in _SQLITE_KINDS:
            raise ValueError(f"unknown JSON kind {kind!r}")
        self.kind = kind
        super().__init__(KnowledgeRow.data, bindparam(None, key, type_=String()))


# SQLite's json_type() and PostgreSQL's json_typeof() name JSON kinds differently.
_SQLITE_KINDS = {
    "number": "IN ('integer', 'real')",
    "string": "= 'text'",
    "true": "= 'true'",
    "false": "= 'false'",
    "present": "<> 'null'",
}
_POSTGRES_KINDS = {
    "number": "json_typeof({data} -> {key}) = 'number'",
    "string": "json_typeof({data} -> {key}) = 'string'",
    "true": "(json_typeof({data} -> {key}) = 'boolean' AND ({data} ->> {key}) = 'true')",
    "false": "(json_typeof({data} -> {key}) = 'boolean' AND ({data} ->> {key}) = 'false')",
    "present": "json_typeof({data} -> {key}) <> 'null'",
}


@compiles(_json_is, "sqlite")
def _json_is_sqlite(element: _json_is, compiler: SQLCompiler, **kw: Any) -> str:
    data, key = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"coalesce(json_type({data}, '$.' || {key}) {_SQLITE_KINDS[element.kind]}, false)"


@compiles(_json_is, "postgresql")
def _json_is_postgres(element: _json_is, compiler: SQLCompiler, **kw: Any) -> str:
    data, key = (compiler.process(clause, **kw) for clause in element.clauses)
    test = _POSTGRES_KINDS[element.kind].format(data=data, key=key)
    return f"coalesce({test}, false)"


def filter_clause(spec: KnowledgeSetSpec, filters: Sequence[RowFilter]) -> ColumnElement[bool]:
    """All `filters` at once (AND). A value of another JSON kind than the filter asks for
    never matches, and never makes the database cast it: CASE guards every cast."""
    return and_(true(), *(_one_filter(spec, f) for f in filters))


def _one_filter(spec: KnowledgeSetSpec, row_filter: RowFilter) -> ColumnElement[bool]:
    column = spec.column(row_filter.column)
    if spec.columns and column is None:
        raise InvalidInput(
            f"filter on unknown column {row_filter.column!r}",
            details=[{"field": "filters", "column": row_filter.column}],
        )
    column_type = column.type if column else None
    key, op, value = row_filter.column, row_filter.op, row_filter.value
    if op is FilterOp.exists:
        present = _json_is(key, "present")
        return not_(present) if value is False else present
    if op in (FilterOp.eq, FilterOp.ne):
        equal = _equals(key, _typed(row_filter, column_type, value))
        return not_(equal) if op is FilterOp.ne else equal
    if op is FilterOp.contains:
        if not isinstance(value, str) or column_type not in (None, ColumnType.text):
            raise _bad_filter(row_filter, "contains needs a text value on a text column")
        found = KnowledgeRow.data[key].as_string().icontains(value, autoescape=True)
        return case((_json_is(key, "string"), found), else_=false())
    number = _typed(row_filter, column_type, value)
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise _bad_filter(row_filter, f"{op.value} needs a number")
    if column_type not in (None, ColumnType.number, ColumnType.integer):
        raise _bad_filter(row_filter, f"{op.value} needs a number or integer column")
    compared = _numeric(key)
    comparison = {
        FilterOp.gt: compared > number,
        FilterOp.gte: compared >= number,
        FilterOp.lt: compared < number,
        FilterOp.lte: compared <= number,
    }[op]
    return case((_json_is(key, "number"), comparison), else_=false())


def _numeric(key: str) -> ColumnElement[float]:
    number: ColumnElement[float] = KnowledgeRow.data[key].as_float()
    return number


def _equals(key: str, value: Any) -> ColumnElement[bool]:
    if value is None:
        return not_(_json_is(key, "present"))
    if isinstance(value, bool):
        return _json_is(key, "true" if value else "false")
    if isinstance(value, int | float):
        return case((_json_is(key, "number"), _numeric(key) == value), else_=false())
    if isinstance(value, str):
        text = KnowledgeRow.data[key].as_string()
        return case((_json_is(key, "string"), text == value), else_=false())
    raise InvalidInput(
        f"filter on {key!r}: eq and ne compare text, numbers, booleans or null",
        details=[{"field": "filters", "column": key}],
    )


def _typed(row_filter: RowFilter, column_type: ColumnType | None, value: Any) -> Any:
    """A value as the column's type, so `"5"` (from a query string) finds the number 5."""
    if not isinstance(value, str) or column_type in (None, ColumnType.text, ColumnType.json):
        return value
    try:
        return coerce(value, column_type)
    except ValueError as exc:
        raise _bad_filter(row_filter, str(exc)) from exc


def _bad_filter(row_filter: RowFilter, why: str) -> InvalidInput:
    return InvalidInput(
        f"filter on {row_filter.column!r} ({row_filter.op.value}): {why}",
        details=[{"field": "filters", "column": row_filter.column}],
    )


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def coerce(text: str, column_type: ColumnType) -> Any:
    """A text value (a CSV cell, a query parameter) as `column_type`; ValueError says why not."""
    stripped = text.strip()
    if column_type is ColumnType.integer:
        try:
            return int(stripped)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if column_type is ColumnType.number:
        try:
            return int(stripped)
        except ValueError:
            pass
        try:
            return float(stripped)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if column_type is ColumnType.boolean:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (true/false)")
    if column_type is ColumnType.json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg}") from None
    return text


# ---------------------------------------------------------------------------------------------
# Lexical search


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


# ---------------------------------------------------------------------------------------------
# Export


async def export_csv(*, session: AsyncSession, knowledge_set: KnowledgeSet) -> AsyncIterator[str]:
    """The set as CSV, a batch of rows at a time. The header is the declared columns, or for a
    set without columns every key any row has, in the order first seen. Objects and lists are
    written as JSON, booleans as true/false, missing values as empty cells."""
    spec = spec_of(knowledge_set)
    header = [c.name for c in spec.columns] or await _all_keys(session, knowledge_set)
    yield _csv_line(header)
    async for batch in _data_batches(session, knowledge_set):
        yield "".join(_csv_line([_cell(data.get(name)) for name in header]) for data in batch)


async def _all_keys(session: AsyncSession, knowledge_set: KnowledgeSet) -> list[str]:
    keys: dict[str, None] = {}
    async for batch in _data_batches(session, knowledge_set):
        for data in batch:
            keys.update(dict.fromkeys(data))
    return list(keys)


async def _data_batches(
    session: AsyncSession, knowledge_set: KnowledgeSet
) -> AsyncIterator[list[dict[str, Any]]]:
    after_id = 0
    while True:
        query = (
            select(KnowledgeRow.id, KnowledgeRow.data)
            .where(KnowledgeRow.set_id == knowledge_set.id, KnowledgeRow.id > after_id)
            .order_by(KnowledgeRow.id)
            .limit(BATCH_ROWS)
        )
        batch = (await session.execute(query)).all()
        if not batch:
            return
        yield [data for _, data in batch]
        after_id = batch[-1][0]


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (`=HYPERLINK(...)`,
# `@SUM(...)`, DDE through `+` or `-`): such text is written with a leading apostrophe, which
# spreadsheets show as plain text. Numbers are written as they are: `-5` stays a number.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


# ---------------------------------------------------------------------------------------------
# Jobs


async def create_job(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    kind: JobKind,
    params: dict[str, Any],
    status: JobStatus = JobStatus.running,
) -> KnowledgeJob:
    job = KnowledgeJob(
        project_id=knowledge_set.project_id,
        set_id=knowledge_set.id,
        kind=kind.value,
        status=status.value,
        params=params,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(*, session: AsyncSession, project_id: str, job_id: str) -> KnowledgeJob:
    job = await session.get(KnowledgeJob, job_id)
    if job is None or job.project_id != project_id:
        raise NotFound(f"knowledge job {job_id} not found")
    return job


async def list_jobs(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, page: PageRequest = ALL
) -> Paged[KnowledgeJob]:
    """Newest first."""
    query = select(KnowledgeJob).where(KnowledgeJob.set_id == knowledge_set.id)
    order = (Key(KnowledgeJob.created_at, descending=True), KnowledgeJob.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def finish_job(
    *,
    session: AsyncSession,
    job_id: str,
    status: JobStatus,
    done: int = 0,
    failed: int = 0,
    error: str | None = None,
) -> KnowledgeJob:
    job = await session.get(KnowledgeJob, job_id)
    if job is None:
        raise NotFound(f"knowledge job {job_id} not found")
    job.status = status.value
    job.done, job.failed, job.total = done, failed, done + failed
    job.error = error
    job.updated_at = utcnow()
    await session.flush()
    return job
