"""Limits on what a request may carry: its size, integers and text the database can store.

Request bodies over the size limit are refused with 413 before they are read whole.

A pure ASGI middleware rather than Starlette's `BaseHTTPMiddleware`: it must see the body as it
streams through `receive`, so a chunked upload with no Content-Length is cut off once it passes
the limit instead of being buffered first. Knowledge imports legitimately send files of up to
100 MB; every other route takes JSON, for which a small limit is plenty."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, field_path, is_json
from baton.domain.storable import UNSTORABLE_TEXT, first_unstorable, storable
from baton.errors import InvalidInput

# The largest integer a BIGINT column holds; a larger offset or seq fails inside the driver.
MAX_DB_INTEGER = 2**63 - 1

# Knowledge imports of a file (`.../imports`, multipart) or of raw text (`.../imports/text`).
UPLOAD_PATH = re.compile(r"^/api/v1/projects/[^/]+/knowledge/.+/imports(/text)?/?$")
# A multipart body wraps the file in boundaries and part headers; a file at the upload limit
# must still fit.
MULTIPART_ENVELOPE_BYTES = 64 * 1024
# A refused body is never read to its end, so the connection cannot serve another request;
# saying so makes the server close it instead of reading (and discarding) the rest.
CLOSE = (b"connection", b"close")


class BodyTooLarge(HTTPException):
    """Raised from `receive` while the app reads the body; the app's error handlers render it
    like any other HTTP error, so the client gets the usual JSON shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit here is {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes + MULTIPART_ENVELOPE_BYTES

    def limit_for(self, path: str) -> int:
        return self.max_upload_bytes if UPLOAD_PATH.match(path) else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return

        received = 0
        refused = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise BodyTooLarge(limit)
            return message

        async def closing_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                if refused:
                    message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        try:
            await self.app(scope, counting_receive, closing_send)
        except BodyTooLarge:
            # Only a body read outside the routes' error handling gets here.
            if response_started:
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        exc = BodyTooLarge(limit)
        response = error_response(Request(scope), 413, "payload_too_large", exc.detail)
        response.raw_headers.append(CLOSE)
        await response(scope, receive, send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# How a NUL or a surrogate looks inside JSON text; bodies without one skip the full check.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


async def refuse_unstorable_text(request: Request) -> None:
    """A NUL character or an unpaired surrogate is valid in JSON and in a Python string, but no
    database column stores it (PostgreSQL refuses NUL in text and JSON; UTF-8 has no
    surrogates). An app-wide dependency refuses it with the field named, rather than letting it
    fail deep inside a database driver."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if not storable(value):
            raise _unstorable([name], name)
    if not is_json(request.headers.get("content-type", "application/json")):
        return
    raw = await request.body()
    if not _SUSPECT_ESCAPE.search(raw):
        return
    try:
        body = json.loads(raw)
    except ValueError:
        return  # not JSON after all: the route's own parsing answers for it
    path = first_unstorable(body)
    if path is not None:
        raise _unstorable(["body", *path], field_path(path, body) or "body")


def _unstorable(loc: list[Any], field: str) -> InvalidInput:
    return InvalidInput(
        f"invalid input: {field}: {UNSTORABLE_TEXT}",
        details=[{"loc": loc, "field": field, "msg": UNSTORABLE_TEXT, "type": "unstorable_text"}],
    )
