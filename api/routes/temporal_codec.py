"""Temporal's codec-server protocol, so the Temporal UI and CLI show Baton's encrypted payloads
in clear to whoever may read them: `POST /api/temporal-codec/decode` and `/encode`, bodies
`{"payloads": [{"metadata": {name: base64}, "data": base64}]}`.

The caller is an API token (`Authorization: Token <t>`, e.g. `temporal workflow show
--codec-endpoint .../api/temporal-codec --codec-auth 'Token <t>'`) or the session cookie
that `/sign-in` sets for a browser: the Temporal UI sends no token of ours, but it does send
cookies when its codec setting "Include cross-origin credentials" is on. Only the payloads of
the caller's own projects are decoded; CORS admits the Temporal UI's origin alone."""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse, Response
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, StringConstraints
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.deps import SessionDep, SettingsDep, presented_token
from api.temporal_codec import (
    SESSION_SECONDS,
    CodecSessions,
    decode_for,
    encode,
)
from baton.db.payload_store import DatabasePayloadStore
from baton.db.repositories import accounts
from baton.domain.accounts import Principal
from baton.errors import InvalidInput, PermissionDenied, Unauthenticated
from baton.payload_codec import PayloadKeys
from baton.security import visible_prefix

PREFIX = "/api/temporal-codec"
SESSION_COOKIE = "baton_temporal_codec"

router = APIRouter(prefix=PREFIX, tags=["temporal-codec"])


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class CodecCORS:
    """CORS for the codec routes only, and only for the Temporal UI's origin (credentials
    included, for the session cookie): the rest of the API stays closed to other origins."""

    def __init__(self, app: ASGIApp, *, ui_url: str) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=[origin_of(ui_url)],
            allow_methods=["POST"],
            allow_headers=["Content-Type", "X-Namespace", "Authorization"],
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# Protobuf JSON's bytes: base64, standard or URL-safe alphabet, padding optional.
Base64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/_-]*={0,2}$")]


class CodecPayload(BaseModel):
    """A Temporal payload in protobuf JSON: metadata values and data are base64 (any other
    field of the message, such as `externalPayloads`, is kept)."""

    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Base64] = {}
    data: Base64 = ""


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload] = []


def to_payloads(body: CodecPayloads) -> list[Payload]:
    payloads = []
    for index, payload in enumerate(body.payloads):
        try:
            payloads.append(json_format.ParseDict(payload.model_dump(), Payload()))
        except json_format.ParseError as exc:
            raise InvalidInput(f"payloads[{index}] is not a Temporal payload: {exc}") from None
    return payloads


def from_payloads(payloads: list[Payload]) -> CodecPayloads:
    return CodecPayloads(payloads=[CodecPayload(**json_format.MessageToDict(p)) for p in payloads])


def payload_keys(request: Request) -> PayloadKeys:
    keys: PayloadKeys = request.app.state.payload_keys
    return keys


def codec_sessions(settings: SettingsDep) -> CodecSessions:
    return CodecSessions(settings.require_secret_key())


async def codec_principal(
    request: Request,
    session: SessionDep,
    sessions: Annotated[CodecSessions, Depends(codec_sessions)],
) -> Principal:
    """A token in the Authorization header, else the signed-in session cookie."""
    if "authorization" in request.headers:
        principal = await accounts.authenticate(session=session, token=presented_token(request))
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        token_id = sessions.token_id(cookie) if cookie else None
        if token_id is None:
            raise Unauthenticated(
                "send 'Authorization: Token <token>', or sign in once at "
                f"{PREFIX}/sign-in so the Temporal UI's requests carry a session"
            )
        principal = await accounts.authenticate_token_id(session=session, token_id=token_id)
    if principal.is_user_group:
        raise PermissionDenied("a user group token cannot read Temporal payloads")
    return principal


CodecPrincipalDep = Annotated[Principal, Depends(codec_principal)]
KeysDep = Annotated[PayloadKeys, Depends(payload_keys)]


def check_namespace(
    settings: SettingsDep, x_namespace: Annotated[str | None, Header()] = None
) -> None:
    if x_namespace is not None and x_namespace != settings.temporal_namespace:
        raise InvalidInput(
            f"this codec serves the namespace {settings.temporal_namespace!r}, not {x_namespace!r}"
        )


@router.post("/decode", dependencies=[Depends(check_namespace)])
async def decode(
    body: CodecPayloads,
    request: Request,
    principal: CodecPrincipalDep,
    session: SessionDep,
    keys: KeysDep,
) -> CodecPayloads:
    """Payloads of the caller's projects decoded; any other payload as it was sent."""
    decoded = await decode_for(
        to_payloads(body),
        principal=principal,
        session=session,
        workflows=request.app.state.workflow_projects,
        keys=keys,
        store=DatabasePayloadStore(request.app.state.session_factory),
    )
    return from_payloads(decoded)


@router.post("/encode", dependencies=[Depends(check_namespace)])
async def encode_payloads(
    body: CodecPayloads, principal: CodecPrincipalDep, keys: KeysDep
) -> CodecPayloads:
    """Encrypted as a worker would (for input the UI sends, such as a signal's)."""
    return from_payloads(encode(to_payloads(body), keys))


# The sign-in pages take a token: no other site may show them in a frame.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}

SIGN_IN_FORM = """<!doctype html>
<html><head><meta charset="utf-8"><title>Baton: read runs in the Temporal UI</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Read Baton runs in the Temporal UI</h1>
<p>Temporal keeps Baton's payloads encrypted. Sign in with an API token once: this browser then
decodes, in the Temporal UI, the payloads of that token's projects (for 12 hours).</p>
<form method="post">
<label>API token <input type="password" name="token" autocomplete="off" size="50"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
"""

SIGNED_IN = """<!doctype html>
<html><head><meta charset="utf-8"><title>Baton: signed in</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Signed in</h1>
<p>This browser decodes the payloads of token <code>{prefix}…</code>'s projects.</p>
<p>In the Temporal UI at <a href="{ui}">{ui}</a>, open the codec server settings (the
"Codec Server" / data encoder button), tick "Use my browser setting", enter
<code>{endpoint}</code> as the endpoint and tick "Include cross-origin credentials":
the UI then sends this session with its requests.</p>
</body></html>
"""


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form() -> HTMLResponse:
    return HTMLResponse(SIGN_IN_FORM, headers=NOT_FRAMED)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    sessions: Annotated[CodecSessions, Depends(codec_sessions)],
) -> HTMLResponse:
    """Takes the token once (a form field `token`, or the Authorization header) and answers
    with an HttpOnly, SameSite=Strict session cookie scoped to the codec routes."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.url.netloc:
        raise PermissionDenied("sign in from this page, not from another site")
    if "authorization" in request.headers:
        token = presented_token(request)
    else:
        form = await request.form()
        field = form.get("token")
        token = field.strip() if isinstance(field, str) else ""
        if not token:
            raise Unauthenticated("enter an API token")
    principal = await accounts.authenticate(session=session, token=token)
    if principal.is_user_group or principal.token_id is None:
        raise PermissionDenied("a user group token cannot read Temporal payloads")
    endpoint = str(request.url.replace(path=PREFIX, query=""))
    page = SIGNED_IN.format(
        prefix=html.escape(visible_prefix(token)),
        ui=html.escape(settings.temporal_ui_url),
        endpoint=html.escape(endpoint),
    )
    response = HTMLResponse(page, headers=NOT_FRAMED)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(principal.token_id),
        max_age=SESSION_SECONDS,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/sign-out", status_code=204)
async def sign_out() -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response
