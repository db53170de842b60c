"""Imports into a knowledge set: CSV, JSONL and JSON files, raw text and web pages.

Files are parsed as they stream in, a chunk at a time, and rows reach the database in batches:
a 100 MB file is never held whole. Past its size limits (`ImportLimits`: the organisation's
plan under the installation's ceilings, PlanBook.limits) an import stops with ImportTooLarge;
the caller runs it in one transaction, so a refused or failed import leaves the set as it
was."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import ijson  # type: ignore[import-untyped]
from bs4 import BeautifulSoup
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeSet
from baton.domain.credits import MB, PlanLimits
from baton.domain.knowledge import KnowledgeSetSpec
from baton.errors import BatonError, InvalidInput
from baton.integrations import http
from baton.knowledge import store
from baton.knowledge.filters import coerce

READ_BYTES = 64 * 1024
BATCH_ROWS = 1000
# A web page larger than this is refused rather than read.
MAX_PAGE_BYTES = 10 * 1024 * 1024
# Elements whose text is not the page's content.
_NOT_CONTENT = ("script", "style", "nav", "noscript", "template", "svg", "header", "footer")

Read = Callable[[int], Awaitable[bytes]]


class ImportTooLarge(BatonError):
    code = "payload_too_large"
    status_code = 413


@dataclass(frozen=True, slots=True)
class ImportLimits:
    """How large one import may be: bytes of a file, rows it adds."""

    max_bytes: int
    max_rows: int

    @classmethod
    def of(cls, limits: PlanLimits) -> ImportLimits:
        return cls(max_bytes=limits.max_upload_bytes, max_rows=limits.max_rows_per_import)

    def too_many_rows(self, message: str) -> ImportTooLarge:
        return ImportTooLarge(
            message, details={"limit": "max_rows_per_import", "max_rows": self.max_rows}
        )


def size_text(n_bytes: int) -> str:
    return f"{n_bytes // MB} MB" if n_bytes % MB == 0 else f"{n_bytes} bytes"


class ImportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    json = "json"


def format_of(filename: str | None, declared: str | None) -> ImportFormat:
    """The declared format, else the file's extension (`.ndjson` is JSONL)."""
    name = (declared or (filename or "").rsplit(".", 1)[-1]).lower()
    name = "jsonl" if name == "ndjson" else name
    try:
        return ImportFormat(name)
    except ValueError:
        raise InvalidInput(
            "name the format (csv, jsonl or json) in the `format` field or by the file's "
            f"extension; got {name or 'none'!r}",
            details=[{"field": "format"}],
        ) from None


async def import_file(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    read: Read,
    file_format: ImportFormat,
    limits: ImportLimits,
) -> int:
    """Parses the file `read` returns chunk by chunk and inserts its rows; returns how many."""
    chunks = byte_chunks(read, limit=limits.max_bytes)
    spec = spec_of(knowledge_set)
    parsers = {
        ImportFormat.csv: csv_rows,
        ImportFormat.jsonl: jsonl_rows,
        ImportFormat.json: json_rows,
    }
    return await insert_all(
        session=session,
        knowledge_set=knowledge_set,
        rows=parsers[file_format](chunks, spec),
        limits=limits,
    )


async def insert_all(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    rows: AsyncIterator[dict[str, Any]],
    limits: ImportLimits,
) -> int:
    inserted = 0
    batch: list[dict[str, Any]] = []
    async for row in rows:
        if inserted + len(batch) >= limits.max_rows:
            raise limits.too_many_rows(
                f"the import has more than {limits.max_rows} rows (the plan's "
                "max_rows_per_import); split it into several"
            )
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            inserted += await _insert(session, knowledge_set, batch, first=inserted + 1)
            batch = []
    if batch:
        inserted += await _insert(session, knowledge_set, batch, first=inserted + 1)
    return inserted


async def _insert(
    session: AsyncSession, knowledge_set: KnowledgeSet, batch: list[dict[str, Any]], first: int
) -> int:
    ids = await store.insert_rows(
        session=session, knowledge_set=knowledge_set, rows=batch, first_row=first
    )
    return len(ids)


async def byte_chunks(read: Read, *, limit: int) -> AsyncIterator[bytes]:
    """The upload a chunk at a time, refused once it passes `limit` bytes."""
    total = 0
    while chunk := await read(READ_BYTES):
        total += len(chunk)
        if total > limit:
            raise ImportTooLarge(
                f"the file is larger than {size_text(limit)} (the plan's max_upload_bytes); "
                "split it into several",
                details={"limit": "max_upload_bytes", "max_bytes": limit},
            )
        yield chunk


async def text_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """UTF-8 lines (a leading BOM dropped), each with its line ending. A line's pieces are
    joined once it ends, so a long line costs what it weighs, not its square."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pieces: list[str] = []
    try:
        async for chunk in chunks:
            *lines, rest = decoder.decode(chunk).split("\n")
            if lines:
                lines[0] = "".join([*pieces, lines[0]])
                pieces = []
                for line in lines:
                    yield line + "\n"
            pieces.append(rest)
        pieces.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file is not UTF-8 text: {exc.reason}") from exc
    if last := "".join(pieces):
        yield last


async def csv_rows(
    chunks: AsyncIterator[bytes], spec: KnowledgeSetSpec
) -> AsyncIterator[dict[str, Any]]:
    """Rows keyed by the header line. Cells become the declared column's type; an empty cell
    is a missing value. A quoted cell may hold line breaks: a record ends only on a line
    where the quotes balance."""
    header: list[str] | None = None
    number = 0
    async for record in _csv_records(text_lines(chunks)):
        if header is None:
            header = [name.strip() for name in record]
            _check_header(header, spec)
            continue
        number += 1
        if not any(cell.strip() for cell in record):
            continue
        if len(record) > len(header):
            raise InvalidInput(f"CSV record {number} has more cells than the header")
        yield _typed_record(header, record, spec, number)


async def _csv_records(lines: AsyncIterator[str]) -> AsyncIterator[list[str]]:
    pending: list[str] = []
    quotes = 0
    async for line in lines:
        pending.append(line)
        quotes += line.count('"')
        if quotes % 2:
            continue
        try:
            yield from_csv("".join(pending))
        except csv.Error as exc:
            raise InvalidInput(f"the CSV file is malformed: {exc}") from exc
        pending, quotes = [], 0
    if pending:
        raise InvalidInput("the CSV file ends inside a quoted cell")


def from_csv(text: str) -> list[str]:
    return next(csv.reader([text]), [])


def _check_header(header: list[str], spec: KnowledgeSetSpec) -> None:
    if not header or not all(header):
        raise InvalidInput("the CSV header line needs a name for every column")
    if len(set(header)) != len(header):
        raise InvalidInput("the CSV header names a column twice")
    unknown = [name for name in header if spec.columns and spec.column(name) is None]
    if unknown:
        known = ", ".join(c.name for c in spec.columns)
        raise InvalidInput(
            f"the CSV header names unknown columns: {', '.join(unknown)} (the set's: {known})",
            details=[{"field": name} for name in unknown],
        )


def _typed_record(
    header: list[str], record: list[str], spec: KnowledgeSetSpec, number: int
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, cell in zip(header, record, strict=False):
        column = spec.column(name)
        if column is None:
            row[name] = cell
            continue
        if not cell.strip():
            continue
        try:
            row[name] = coerce(cell, column.type)
        except ValueError as exc:
            raise InvalidInput(
                f"CSV record {number}, column {name!r}: {exc}",
                details=[{"field": name, "record": number}],
            ) from exc
    return row


async def jsonl_rows(
    chunks: AsyncIterator[bytes], _spec: KnowledgeSetSpec
) -> AsyncIterator[dict[str, Any]]:
    """One JSON object per line; blank lines are skipped."""
    number = 0
    async for line in text_lines(chunks):
        number += 1
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"JSONL line {number} is not valid JSON: {exc.msg}") from exc
        if not isinstance(row, dict):
            raise InvalidInput(f"JSONL line {number} is not a JSON object")
        yield row


async def json_rows(
    chunks: AsyncIterator[bytes], _spec: KnowledgeSetSpec
) -> AsyncIterator[dict[str, Any]]:
    """The objects of a top-level JSON array, parsed as the bytes arrive."""
    stream = _AsyncReader(chunks)
    if await stream.peek() != b"[":
        raise InvalidInput("a JSON import is one array of objects: `[{...}, {...}]`")
    number = 0
    try:
        async for row in ijson.items(stream, "item", use_float=True):
            number += 1
            if not isinstance(row, dict):
                raise InvalidInput(f"item {number} of the JSON array is not an object")
            yield row
    except ijson.JSONError as exc:
        raise InvalidInput(f"the JSON file is malformed after item {number}: {exc}") from exc


class _AsyncReader:
    """An async file for ijson over a stream of byte chunks, able to peek the first byte."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    async def peek(self) -> bytes:
        """The first byte that is not white space (b"" for an empty stream)."""
        while not self._buffer.lstrip():
            chunk = await anext(self._chunks, b"")
            if not chunk:
                return b""
            self._buffer += chunk
        self._buffer = self._buffer.lstrip()
        return self._buffer[:1]

    async def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks for nothing to learn whether the stream gives bytes
            return b""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        return await anext(self._chunks, b"")


# ---------------------------------------------------------------------------------------------
# Text and web pages


def chunk_text(text: str, *, chunk_size: int, overlap: int) -> list[str]:
    """`text` in chunks of `chunk_size` words, each starting `chunk_size - overlap` words
    after the last, so a sentence cut at a boundary is whole in one of the two chunks.
    Words, not characters: no word is cut, and embedding models count in words' pieces."""
    if not 0 <= overlap < chunk_size:
        raise InvalidInput(
            f"overlap ({overlap}) must be at least 0 and less than chunk_size ({chunk_size})",
            details=[{"field": "overlap"}],
        )
    words = text.split()
    step = chunk_size - overlap
    starts = range(0, max(len(words) - overlap, 1), step)
    return [" ".join(words[start : start + chunk_size]) for start in starts if words[start:]]


def text_rows(chunks: list[str], *, source: str) -> list[dict[str, Any]]:
    return [
        {"text": chunk, "source": source, "chunk": number}
        for number, chunk in enumerate(chunks, start=1)
    ]


async def import_text(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    text: str,
    source: str,
    chunk_size: int,
    overlap: int,
    limits: ImportLimits,
) -> int:
    chunks = chunk_text(text, chunk_size=chunk_size, overlap=overlap)
    if len(chunks) > limits.max_rows:
        raise limits.too_many_rows(
            f"the text makes {len(chunks)} chunks, more than {limits.max_rows} (the plan's "
            "max_rows_per_import); use a larger chunk_size"
        )
    rows = text_rows(chunks, source=source)
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start : start + BATCH_ROWS]
        await _insert(session, knowledge_set, batch, first=start + 1)
    return len(rows)


async def fetch_page(url: str, *, policy: http.EgressPolicy) -> tuple[str, str]:
    """A web page's readable text and its final URL. Only the public internet (and what the
    operator's egress policy allows) is reachable."""
    result = await http.fetch("GET", url, policy=policy, max_response_bytes=MAX_PAGE_BYTES)
    if not 200 <= result.status < 300:
        raise InvalidInput(f"the page answered HTTP {result.status}", details=[{"field": "url"}])
    content_type = result.headers.get("content-type", "")
    if "html" in content_type or not content_type:
        return readable_text(result.text()), result.url
    if content_type.startswith("text/"):
        return result.text(), result.url
    raise InvalidInput(
        f"the page is {content_type.split(';')[0]}, not HTML or text",
        details=[{"field": "url"}],
    )


def readable_text(html: str) -> str:
    """The text a reader sees: no scripts, styles or navigation, one block per line."""
    soup = BeautifulSoup(html, "html.parser")
    for element in soup(_NOT_CONTENT):
        element.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)
