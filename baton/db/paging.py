"""Keyset paging: every list reads one page after a cursor, in an order that names each item
once (its last key is unique), so a page never repeats or skips an item whatever is added
or removed meanwhile. A cursor is the last item's keys as base64 JSON: opaque to clients."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import ColumnElement, Select, TypeDecorator, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from baton.errors import InvalidInput

# Integer keys (row ids, versions) are the databases' 32-bit integers.
MAX_INTEGER_KEY = 2**31 - 1

T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class PageRequest:
    """`limit` None reads everything, for callers inside Baton that need every item."""

    limit: int | None = None
    cursor: str | None = None


ALL = PageRequest()


@dataclass(frozen=True)
class Paged(Generic[T]):
    items: list[T]
    next_cursor: str | None

    def map(self, convert: Callable[[T], U]) -> Paged[U]:
        return Paged([convert(item) for item in self.items], self.next_cursor)


@dataclass(frozen=True)
class Key:
    """One column of a list's order."""

    column: InstrumentedAttribute[Any]
    descending: bool = False


Order = Sequence["Key | InstrumentedAttribute[Any]"]


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> list[Any]:
    """The values a cursor holds, typed as the order's columns; a 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        plain = json.loads(raw)
        if not isinstance(plain, list) or len(plain) != len(types):
            raise ValueError("wrong length")
        return [_typed(value, kind) for value, kind in zip(plain, types, strict=True)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "cursor: not a cursor of this list; pass the next_cursor of the page before",
            details=[{"field": "cursor", "message": "invalid cursor"}],
        ) from exc


def _typed(value: Any, kind: type) -> Any:
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError("not a time")
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment
    if kind is int:
        # bool is an int to Python, never a key here.
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("not an integer")
        if not 0 <= value <= MAX_INTEGER_KEY:
            raise ValueError("out of range")
        return value
    if not isinstance(value, kind):
        raise TypeError(f"not a {kind.__name__}")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("a NUL no text column holds")
    if isinstance(value, str):
        value.encode()  # a lone surrogate no database stores: UnicodeEncodeError, a ValueError
    return value


def _keys(order: Order) -> list[Key]:
    return [k if isinstance(k, Key) else Key(k) for k in order]


def _after(keys: list[Key], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order: for each key, the keys before it equal
    and it past its value (in the key's own direction)."""
    clauses = []
    for index, key in enumerate(keys):
        equal = [k.column == v for k, v in zip(keys[:index], values[:index], strict=True)]
        past = key.column < values[index] if key.descending else key.column > values[index]
        clauses.append(and_(*equal, past))
    return or_(*clauses)


def _python_type(column: InstrumentedAttribute[Any]) -> type:
    kind = column.type
    # A decorated type (UtcDateTime) says `object`; the type it decorates knows.
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    python_type: type = kind.python_type
    return python_type


def _value(item: Any, column: InstrumentedAttribute[Any]) -> Any:
    """The column's value on an ORM object, or on the object of its class in a result row."""
    owner = cast(type, column.class_)
    entity = item if isinstance(item, owner) else next(e for e in item if isinstance(e, owner))
    return getattr(entity, column.key)


async def fetch_page(
    *,
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    order: Order,
    page: PageRequest,
) -> Paged[Any]:
    """The page of `query` (which selects one entity, or rows of entities) after the cursor.
    A row result comes back as a tuple of its entities."""
    keys = _keys(order)
    if page.cursor is not None:
        types = [_python_type(k.column) for k in keys]
        query = query.where(_after(keys, decode_cursor(page.cursor, types)))
    query = query.order_by(*(k.column.desc() if k.descending else k.column for k in keys))
    if page.limit is not None:
        query = query.limit(page.limit + 1)
    result = await session.execute(query)
    single = len(query.column_descriptions) == 1
    items = [row[0] if single else tuple(row) for row in result]
    if page.limit is None or len(items) <= page.limit:
        return Paged(items, None)
    items = items[: page.limit]
    return Paged(items, encode_cursor([_value(items[-1], k.column) for k in keys]))


def page_of_list(items: Sequence[T], key: Callable[[T], str], page: PageRequest) -> Paged[T]:
    """The same paging over a list held in memory, ordered by a unique text key."""
    ordered = sorted(items, key=key)
    if page.cursor is not None:
        [after] = decode_cursor(page.cursor, [str])
        ordered = [item for item in ordered if key(item) > after]
    if page.limit is None or len(ordered) <= page.limit:
        return Paged(ordered, None)
    return Paged(ordered[: page.limit], encode_cursor([key(ordered[page.limit - 1])]))
