"""Every error leaves the API as `{"error": {"code", "message", "details"}}` with its 4xx;
`/api/user` adds `"success": 0`, as its documentation says."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from baton.errors import BatonError

logger = logging.getLogger("baton.api")

USER_GROUP_PATH = "/api/user"
# The first few problems go into the message; all of them are in `details`.
MAX_ERRORS_IN_MESSAGE = 3
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


# Seconds a client is told to wait when the database is busy.
BUSY_RETRY_AFTER_S = 1


def error_response(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details}}
    if request.url.path == USER_GROUP_PATH:
        body = {"success": 0, **body}
    if status_code == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Token"}
    return AsciiJSONResponse(body, status_code=status_code, headers=headers)


def is_database_busy(exc: OperationalError | SQLAlchemyTimeoutError) -> bool:
    """SQLite's lock held past the busy timeout, or no pooled connection free in time."""
    if isinstance(exc, SQLAlchemyTimeoutError):
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text


class AsciiJSONResponse(JSONResponse):
    """An error may quote a field name from the request, and that may hold an unpaired
    surrogate, which UTF-8 cannot encode; escaped as ASCII it is still valid JSON."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


def field_path(loc: Sequence[Any], body: Any) -> str:
    """`("steps", 2, "http", "url")` -> `steps[2].url`, the way a person points at a field.

    A discriminated union puts its tag (`http`) into the location; it is not a field, so it is
    left out when the body shows it is the object's `type`."""
    path = ""
    node = body
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            in_list = isinstance(node, list) and 0 <= part < len(node)
            node = node[part] if in_list else None
        elif isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return path


def _validation_details(errors: Sequence[Any], body: Any = None) -> list[dict[str, Any]]:
    """Where (`loc` as pydantic gives it, and `field` as a person reads it) and what is wrong.
    The offending input is left out: it may be a secret someone pasted in the wrong field."""
    details = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if loc[:1] == ["body"]:
            field = field_path(loc[1:], body) or "body"
        else:
            field = field_path(loc, None)
        details.append(
            {"loc": loc, "field": field, "msg": error.get("msg", ""), "type": error.get("type")}
        )
    return details


def _summary(details: list[dict[str, Any]]) -> str:
    shown = "; ".join(f"{d['field']}: {d['msg']}" for d in details[:MAX_ERRORS_IN_MESSAGE])
    more = len(details) - MAX_ERRORS_IN_MESSAGE
    return f"invalid input: {shown}" + (f" (and {more} more in details)" if more > 0 else "")


def is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        position = malformed["loc"][-1]
        reason = malformed.get("ctx", {}).get("error", "JSON decode error")
        message = f"the body is not valid JSON: {reason} (at character {position})"
        details = [{"loc": ["body"], "field": "body", "msg": message, "type": "json_invalid"}]
        return error_response(request, 400, "invalid_json", message, details)
    content_type = request.headers.get("content-type", "")
    # FastAPI parses a body as JSON only when it says it is JSON; any other type arrives as
    # bytes, and "input should be an object" would not tell the client what to change.
    if isinstance(exc.body, bytes) and content_type and not is_json(content_type):
        message = (
            f"send the body as JSON with 'Content-Type: application/json', not {content_type!r}"
        )
        return error_response(request, 415, "unsupported_media_type", message)
    details = _validation_details(errors, exc.body)
    return error_response(request, 422, "invalid_input", _summary(details), details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BatonError)
    async def _baton_error(request: Request, exc: BatonError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _request_validation_error(request, exc)

    @app.exception_handler(ValidationError)
    async def _invalid_model(request: Request, exc: ValidationError) -> JSONResponse:
        details = _validation_details(exc.errors())
        return error_response(request, 422, "invalid_input", _summary(details), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(OperationalError)
    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _database_error(
        request: Request, exc: OperationalError | SQLAlchemyTimeoutError
    ) -> JSONResponse:
        if not is_database_busy(exc):
            return await _unexpected(request, exc)
        logger.warning("database busy on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            request,
            503,
            "database_busy",
            "the database is busy; nothing was changed, try again in a moment",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error")
