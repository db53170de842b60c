"""The one shape every list answers with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from baton.db.paging import Paged

T = TypeVar("T")
S = TypeVar("S")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )

    @classmethod
    def of(cls, paged: Paged[S], convert: Callable[[S], T]) -> Page[T]:
        return cls(items=[convert(item) for item in paged.items], next_cursor=paged.next_cursor)
