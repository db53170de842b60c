"""The console's session cookie: signed with a key derived from the installation's secret
key, it names the API token by id (never the token itself), the project picked, and the
session's CSRF token. The token is looked up again on every request, so revoking it signs
the console out at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE = "baton_console"
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True)
class ConsoleSession:
    """`token_id` is empty before sign-in: the sign-in form needs a CSRF token too."""

    csrf: str
    expires: int
    token_id: str = ""
    project_id: str = ""

    @property
    def signed_in(self) -> bool:
        return bool(self.token_id)

    def with_token(self, token_id: str, project_id: str) -> ConsoleSession:
        """A new CSRF token on sign-in, so a token planted before it is worth nothing."""
        return replace(new_session(), token_id=token_id, project_id=project_id)

    def with_project(self, project_id: str) -> ConsoleSession:
        return replace(self, project_id=project_id)


def new_session(*, now: float | None = None) -> ConsoleSession:
    expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
    return ConsoleSession(csrf=secrets.token_urlsafe(24), expires=expires)


class SessionSigner:
    def __init__(self, secret_key: str) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"baton console session"
        ).derive(secret_key.encode())

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dump(self, session: ConsoleSession) -> str:
        # None of the parts holds a "." (ids and urlsafe base64 do not).
        message = ".".join(
            (session.csrf, str(session.expires), session.token_id, session.project_id)
        )
        return f"{message}.{self._mac(message)}"

    def load(self, value: str, *, now: float | None = None) -> ConsoleSession | None:
        """The session of a valid, unexpired cookie; None for anything else."""
        parts = value.split(".")
        if len(parts) != 5:
            return None
        csrf, expires, token_id, project_id, mac = parts
        if not hmac.compare_digest(mac, self._mac(".".join(parts[:4]))):
            return None
        if not expires.isdigit() or int(expires) <= (now if now is not None else time.time()):
            return None
        return ConsoleSession(
            csrf=csrf, expires=int(expires), token_id=token_id, project_id=project_id
        )
