"""Filters on a set's rows, and typed values from text.

Row values live in a JSON column, so filters reach into it per dialect; every value a user
gives is a bound parameter, never SQL text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    String,
    and_,
    bindparam,
    case,
    false,
    not_,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from baton.db.tables import KnowledgeRow
from baton.domain.knowledge import ColumnType, FilterOp, KnowledgeSetSpec, RowFilter
from baton.errors import InvalidInput


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
