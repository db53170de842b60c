"""The cookies of the pages a visitor opens without a token: a share link's visitor (a
random id, so they see only the conversations they started) and a user group's dashboard
session. Both are signed with a key derived from the installation's secret key; each page's
CSRF token is derived from the cookie, so a form posted from another site is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Request, Response

from baton.errors import PermissionDenied
from baton.settings import Settings

VISITOR_COOKIE = "baton_visitor"
VISITOR_SECONDS = 90 * 24 * 3600
DASHBOARD_COOKIE = "baton_dashboard"
DASHBOARD_SECONDS = 8 * 3600


class Signer:
    def __init__(self, secret_key: str) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"baton sharing cookies"
        ).derive(secret_key.encode())

    def mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def sign(self, *parts: str) -> str:
        message = ".".join(parts)
        return f"{message}.{self.mac(message)}"

    def unsign(self, value: str, count: int) -> list[str] | None:
        """The `count` parts of a value this signer signed; None for anything else."""
        parts = value.split(".")
        if len(parts) != count + 1:
            return None
        if not hmac.compare_digest(parts[-1], self.mac(".".join(parts[:-1]))):
            return None
        return parts[:-1]

    def csrf(self, cookie: str) -> str:
        return self.mac(f"csrf:{cookie}")


def signer(request: Request) -> Signer:
    """Made on first use: the secret key is read when the app starts, not when it is built."""
    state = request.app.state
    if getattr(state, "sharing_signer", None) is None:
        settings: Settings = state.settings
        state.sharing_signer = Signer(settings.require_secret_key())
    made: Signer = state.sharing_signer
    return made


def set_cookie(request: Request, response: Response, name: str, value: str, seconds: int) -> None:
    """Over https SameSite=None, so the cookie works inside another site's iframe; over plain
    http browsers refuse that, and Lax serves pages framed by the same site (another port)."""
    https = request.url.scheme == "https"
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path="/",
        httponly=True,
        samesite="none" if https else "lax",
        secure=https,
    )


@dataclass(frozen=True)
class Visitor:
    """Someone who opened a share link; `cookie` is what their browser keeps."""

    id: str
    cookie: str


def visitor_of(request: Request) -> Visitor:
    """The visitor the cookie names, or a new one (whose cookie the page then sets)."""
    sign = signer(request)
    value = request.cookies.get(VISITOR_COOKIE, "")
    parts = sign.unsign(value, 1) if value else None
    if parts is not None:
        return Visitor(id=parts[0], cookie=value)
    visitor_id = secrets.token_urlsafe(24)
    return Visitor(id=visitor_id, cookie=sign.sign(visitor_id))


@dataclass(frozen=True)
class DashboardVisit:
    user_group_id: str
    project_id: str
    cookie: str


def dashboard_cookie(request: Request, user_group_id: str, project_id: str) -> str:
    expires = str(int(time.time()) + DASHBOARD_SECONDS)
    return signer(request).sign(user_group_id, project_id, expires, secrets.token_urlsafe(12))


def dashboard_visit(request: Request) -> DashboardVisit | None:
    value = request.cookies.get(DASHBOARD_COOKIE, "")
    parts = signer(request).unsign(value, 4) if value else None
    if parts is None:
        return None
    user_group_id, project_id, expires, _ = parts
    if not expires.isdigit() or int(expires) <= time.time():
        return None
    return DashboardVisit(user_group_id=user_group_id, project_id=project_id, cookie=value)


def check_csrf(request: Request, cookie: str | None, sent: object) -> None:
    """A form's `csrf` field must be the one derived from the browser's own cookie."""
    expected = signer(request).csrf(cookie) if cookie else None
    if expected is None or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise PermissionDenied("the form's CSRF token is missing or wrong; reload the page")
