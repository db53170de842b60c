"""A knowledge set as CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeSet


async def export_csv(*, session: AsyncSession, knowledge_set: KnowledgeSet) -> AsyncIterator[str]:
    """The set as CSV, a batch of rows at a time. The header is the declared columns, or for a
    set without columns every key any row has, in the order first seen. Objects and lists are
    written as JSON, booleans as true/false, missing values as empty cells."""
    spec = spec_of(knowledge_set)
    header = [c.name for c in spec.columns] or await _all_keys(session, knowledge_set)
    yield _csv_line(header)
    async for batch in row_repo.data_batches(session=session, set_id=knowledge_set.id):
        yield "".join(_csv_line([_cell(data.get(name)) for name in header]) for _, data, _ in batch)


async def _all_keys(session: AsyncSession, knowledge_set: KnowledgeSet) -> list[str]:
    keys: dict[str, None] = {}
    async for batch in row_repo.data_batches(session=session, set_id=knowledge_set.id):
        for _, data, _ in batch:
            keys.update(dict.fromkeys(data))
    return list(keys)


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
