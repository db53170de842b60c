"""A small Slack Web API on 127.0.0.1 and a free port (uvicorn in a thread), so tests run
Baton's Slack client over real HTTP: `auth.test` and `chat.postMessage`, answered with Slack's
JSON shapes (HTTP 200 and `ok: false` for a refusal, as Slack does). It accepts one bot token
(`token`), knows every channel but those in `missing_channels`, and records every post in
`posts` and the `Authorization` header of every call in `authorizations`.

`events_request` builds what Slack itself sends to an app's events URL: a JSON body signed
with the app's signing secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BOT_TOKEN = "xoxb-fake-bot-token-7e8f9a0b"
SIGNING_SECRET = "fake-signing-secret-1a2b3c4d"
TEAM = "T0BATON"
BOT_USER = "U0BATONBOT"


@dataclass
class Post:
    channel: str
    text: str
    thread_ts: str | None
    ts: str


@dataclass
class FakeSlack:
    token: str = BOT_TOKEN
    missing_channels: set[str] = field(default_factory=set)
    posts: list[Post] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/api/auth.test", self._auth_test, methods=["POST"]),
                Route("/api/chat.postMessage", self._post_message, methods=["POST"]),
            ]
        )
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Slack server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def reset(self) -> None:
        self.token = BOT_TOKEN
        self.missing_channels.clear()
        self.posts.clear()
        self.authorizations.clear()

    def posts_in(self, channel: str, thread_ts: str) -> list[Post]:
        return [p for p in self.posts if p.channel == channel and p.thread_ts == thread_ts]

    def _authorized(self, request: Request) -> bool:
        sent = request.headers.get("authorization", "")
        self.authorizations.append(sent)
        return sent == f"Bearer {self.token}"

    async def _auth_test(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        return JSONResponse(
            {
                "ok": True,
                "url": "https://baton-test.slack.com/",
                "team": "Baton test",
                "user": "baton",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": "B0BATON",
            }
        )

    async def _post_message(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        body: dict[str, Any] = await request.json()
        channel = str(body.get("channel", ""))
        if not channel or channel in self.missing_channels:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not body.get("text"):
            return JSONResponse({"ok": False, "error": "no_text"})
        with self._lock:
            ts = f"{1_700_000_000 + len(self.posts)}.000100"
            thread_ts = body.get("thread_ts")
            self.posts.append(Post(channel, str(body["text"]), thread_ts, ts))
        message = {"type": "message", "text": body["text"], "user": BOT_USER, "ts": ts}
        if thread_ts:
            message["thread_ts"] = thread_ts
        return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": message})


def events_request(
    payload: dict[str, Any],
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    retry: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers Slack sends to an events URL: `v0=` + HMAC-SHA256 of
    `v0:{timestamp}:{body}` with the signing secret."""
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return body, headers
