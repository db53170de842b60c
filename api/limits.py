"""Limits on what a request may carry: its size, integers and text the database can store.

Request bodies over the size limit are refused with 413 before they are read whole.

A pure ASGI middleware rather than Starlette's `BaseHTTPMiddleware`: it must see the body as it
streams through `receive`, so a chunked upload with no Content-Length is cut off once it passes
the limit instead of being buffered first. Knowledge imports legitimately send files up to the
installation's upload ceiling (BATON_MAX_UPLOAD_BYTES, 100 MB by default; an organisation's
plan may allow less, which the import enforces as it reads); every other route takes JSON, for
which a small limit is plenty."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, field_path, is_json
from baton import templating
from baton.domain.storable import UNSTORABLE_TEXT, first_unstorable, storable
from baton.errors import BatonError, InvalidInput

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


# Definitions (tools, agents, their imports): what one may hold. Their strings become
# templates, checked at save and rendered at every run, so a definition much larger than any
# real one is refused before it is parsed, validated or stored.
MAX_DEFINITION_VALUES = 20_000
"""Strings, numbers, lists and objects in one definition, at any depth."""
MAX_DEFINITION_TEMPLATES = 1_000
"""Strings with template syntax (`{{`, `{%`, `{#`) in one definition."""
MAX_DEFINITION_DEPTH = 32
"""Lists and objects inside each other."""
MAX_TEMPLATE_CHARS = 100_000
"""Characters in all the strings with template syntax of one definition: each is parsed when
the definition is saved, at a few hundred kilobytes a second."""


class DefinitionTooLarge(BatonError):
    code = "definition_too_large"
    status_code = 413


def check_definition(data: Any, *, what: str = "the definition") -> None:
    """Refuses a definition over one of the limits above, in time linear in what it reads:
    the walk stops at the first limit passed."""
    values = templates = template_chars = 0
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        node, depth = pending.pop()
        values += 1
        if values > MAX_DEFINITION_VALUES:
            raise DefinitionTooLarge(
                f"{what} holds more than {MAX_DEFINITION_VALUES} values (strings, numbers, "
                "lists, objects); split it or move data into knowledge",
                details={"limit": MAX_DEFINITION_VALUES},
            )
        if depth > MAX_DEFINITION_DEPTH:
            raise DefinitionTooLarge(
                f"{what} nests lists and objects more than {MAX_DEFINITION_DEPTH} deep",
                details={"limit": MAX_DEFINITION_DEPTH},
            )
        if isinstance(node, str) and templating.is_template(node):
            templates += 1
            if templates > MAX_DEFINITION_TEMPLATES:
                raise DefinitionTooLarge(
                    f"{what} has more than {MAX_DEFINITION_TEMPLATES} templates",
                    details={"limit": MAX_DEFINITION_TEMPLATES},
                )
            template_chars += len(node)
            if template_chars > MAX_TEMPLATE_CHARS:
                raise DefinitionTooLarge(
                    f"{what} has more than {MAX_TEMPLATE_CHARS} characters of templates",
                    details={"limit": MAX_TEMPLATE_CHARS},
                )
        elif isinstance(node, dict):
            pending.extend((key, depth + 1) for key in node)
            pending.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            pending.extend((item, depth + 1) for item in node)


async def bounded_definition(request: Request) -> None:
    """A route dependency: checks a JSON body against the definition limits before FastAPI
    validates it into a model (which would build every one of its strings)."""
    if not is_json(request.headers.get("content-type", "application/json")):
        return
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON after all: the route's own parsing answers for it
    check_definition(data)


def load_definition(raw: bytes, content_type: str) -> Any:
    """An imported definition: JSON when it says so, else YAML (of which JSON is a part),
    without anchors or aliases (`&a`, `*a`): a few hundred bytes of them expand to millions of
    values. YAML is read as events first (by libyaml when installed), so a document over the
    limits is refused before anything is built from it."""
    if is_json(content_type):
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    else:
        data = _load_yaml(raw)
    check_definition(data)
    # A JSON body was checked by `refuse_unstorable_text`; YAML writes NUL as "\0" too.
    path = first_unstorable(data)
    if path is not None:
        raise _unstorable(["body", *path], field_path(path, data) or "body")
    return data


_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_VALUES = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
_YAML_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_YAML_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _load_yaml(raw: bytes) -> Any:
    values = depth = 0
    try:
        for event in yaml.parse(raw, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise InvalidInput(
                    "YAML anchors and aliases (&name, *name) are not allowed in an import; "
                    "write each value out",
                    details=[{"loc": ["body"], "msg": "YAML alias", "type": "yaml_alias"}],
                )
            if isinstance(event, _YAML_VALUES):
                values += 1
                if values > MAX_DEFINITION_VALUES:
                    raise DefinitionTooLarge(
                        f"the definition holds more than {MAX_DEFINITION_VALUES} values",
                        details={"limit": MAX_DEFINITION_VALUES},
                    )
            if isinstance(event, _YAML_OPEN):
                depth += 1
                if depth > MAX_DEFINITION_DEPTH:
                    raise DefinitionTooLarge(
                        f"the definition nests more than {MAX_DEFINITION_DEPTH} deep",
                        details={"limit": MAX_DEFINITION_DEPTH},
                    )
            elif isinstance(event, _YAML_CLOSE):
                depth -= 1
        return yaml.load(raw, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the body is neither JSON nor YAML: {exc}") from exc
