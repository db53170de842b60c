"""Local servers that speak LLM providers' wire protocols, so tests run the real client
libraries over real HTTP. Each is scripted per test with a queue of replies and records every
request it receives."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

KEY_PLACEHOLDER = "{key}"
"""In an error reply's message, replaced by the credential the request carried, the way some
providers quote a wrong key back."""


@dataclass
class Reply:
    """An SSE stream of `events` (each `(event name or None, data)`), or an error. `cut`
    drops the connection after the events, as a crashed server or a proxy would; `delay`
    is how long the model thinks before it answers at all (seconds)."""

    events: list[tuple[str | None, str]] = field(default_factory=list)
    cut: bool = False
    status: int = 200
    error_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class ReceivedRequest:
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def credential(self) -> str:
        """The key as sent: `Authorization: Bearer <key>` or `x-api-key: <key>`."""
        authorization = self.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[len("bearer ") :]
        return self.headers.get("x-api-key", "")


class FakeProvider:
    """One provider endpoint on 127.0.0.1 and a free port, served by uvicorn in a thread, and
    its models list (`GET models_path`), which answers `models()` to any key and records the
    key in `model_listings`."""

    path: str
    models_path = "/v1/models"

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[ReceivedRequest] = []
        # When (time.monotonic()) a client hung up on a reply it was waiting for.
        self.hung_up_at: list[float] = []
        self.model_listings: list[str] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        app = Starlette(
            routes=[
                Route(self.path, self._handle, methods=["POST"]),
                Route(self.models_path, self._list_models, methods=["GET"]),
            ]
        )
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()
        self.hung_up_at.clear()
        self.model_listings.clear()

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def models(self) -> Any:
        raise NotImplementedError

    def reply_error(
        self, status: int, message: str = "failed", headers: dict[str, str] | None = None
    ) -> None:
        self.queue(
            Reply(status=status, error_body=self.error_body(status, message), headers=headers or {})
        )

    async def _think(self, request: Request, seconds: float) -> bool:
        """Waits `seconds`, or until the server stops (so a long think never holds up `stop`)
        or the client hangs up (recorded in `hung_up_at`, as a provider would stop billing):
        False when the client is gone."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._server.should_exit:
            if await request.is_disconnected():
                self.hung_up_at.append(time.monotonic())
                return False
            await asyncio.sleep(min(0.05, deadline - time.monotonic()))
        return True

    async def _list_models(self, request: Request) -> Response:
        received = ReceivedRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body={}
        )
        self.model_listings.append(received.credential)
        return JSONResponse(self.models())

    async def _handle(self, request: Request) -> Response:
        received = ReceivedRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body=await request.json()
        )
        self.requests.append(received)
        if not self.replies:
            return JSONResponse(self.error_body(500, "the fake has no reply queued"), 500)
        reply = self.replies.popleft()
        if not await self._think(request, reply.delay):
            return Response(status_code=499)
        if reply.status != 200:
            body = json.loads(
                json.dumps(reply.error_body).replace(KEY_PLACEHOLDER, received.credential)
            )
            return JSONResponse(body, reply.status, headers=reply.headers)
        return StreamingResponse(_sse(reply), media_type="text/event-stream", headers=reply.headers)


async def _sse(reply: Reply) -> Any:
    for name, data in reply.events:
        yield (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
    if reply.cut:
        raise ConnectionAbortedError("the fake drops the connection, as asked")


def unused_port() -> int:
    """A free port, for a server about to listen on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Bound and never listening, for the life of the process.
_HELD: list[socket.socket] = []


def refused_port() -> int:
    """A port nothing listens on and nothing can take: connecting to it is refused. (A port
    merely free when asked may be some other test's server a moment later, the suite running
    beside itself.)"""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    _HELD.append(held)
    port: int = held.getsockname()[1]
    return port
