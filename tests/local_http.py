"""A real HTTP server on 127.0.0.1 for tool steps to call: it counts hits, tracks how many
requests are in flight at once, and can fail, hang, redirect or echo on demand (`/mirror`
sends back the query, headers and body it got, and each query value in common encodings)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, quote_plus

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


class LocalHttp:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.headers_seen: list[dict[str, str]] = []
        self.queries_seen: list[dict[str, str]] = []
        # Side effects by idempotency key, as a receiver that honours the key would count them.
        self.effects: Counter[str] = Counter()
        # `/effect` answers no request after this many effects until `release_effects()`.
        self.hold_effects_after: int | None = None
        # When (time.monotonic()) a client hung up on `/slow`.
        self.hung_up_at: list[float] = []
        self._lock = threading.Lock()
        self.port = _free_port()
        app = Starlette(
            routes=[
                Route("/json", self._json),
                Route("/echo", self._echo, methods=["GET", "POST"]),
                Route("/mirror", self._mirror, methods=["GET", "POST"]),
                Route("/reflect", self._reflect, methods=["POST"]),
                Route("/slow", self._slow),
                Route("/status/{code:int}", self._status),
                Route("/redirect", self._redirect),
                Route("/page", self._page),
                Route("/effect", self._effect, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalHttp:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "local HTTP server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.max_in_flight = 0
            self.headers_seen.clear()
            self.queries_seen.clear()
            self.hold_effects_after = None

    def release_effects(self) -> None:
        self.hold_effects_after = None

    def _enter(self, request: Request) -> None:
        with self._lock:
            self.hits[request.url.path + "?" + request.url.query] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.headers_seen.append(dict(request.headers))
            self.queries_seen.append(dict(request.query_params))

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    async def _json(self, request: Request) -> Response:
        self._enter(request)
        try:
            await asyncio.sleep(float(request.query_params.get("sleep", "0")))
            return JSONResponse(
                {"item": request.query_params.get("item"), "items": [1, 2, 3], "ok": True}
            )
        finally:
            self._leave()

    async def _echo(self, request: Request) -> Response:
        self._enter(request)
        try:
            body = (await request.body()).decode()
            return JSONResponse(
                {"authorization": request.headers.get("authorization"), "body": body}
            )
        finally:
            self._leave()

    async def _mirror(self, request: Request) -> Response:
        self._enter(request)
        try:
            return JSONResponse(
                {
                    "query": request.url.query,
                    "headers": dict(request.headers),
                    "body": (await request.body()).decode(),
                    "encoded": {
                        name: _encodings(value) for name, value in request.query_params.items()
                    },
                }
            )
        finally:
            self._leave()

    async def _reflect(self, request: Request) -> Response:
        """The request's body as the answer, with the status asked for."""
        self._enter(request)
        try:
            status = int(request.query_params.get("status", "200"))
            return PlainTextResponse((await request.body()).decode(), status_code=status)
        finally:
            self._leave()

    async def _slow(self, request: Request) -> Response:
        """Answers after `seconds`, unless the client hangs up first (then `hung_up_at`)."""
        self._enter(request)
        try:
            deadline = time.monotonic() + float(request.query_params.get("seconds", "30"))
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    self.hung_up_at.append(time.monotonic())
                    return PlainTextResponse("gone", status_code=499)
                await asyncio.sleep(0.05)
            return PlainTextResponse("late")
        finally:
            self._leave()

    async def _status(self, request: Request) -> Response:
        self._enter(request)
        self._leave()
        return PlainTextResponse("nope", status_code=request.path_params["code"])

    async def _redirect(self, request: Request) -> Response:
        self._enter(request)
        self._leave()
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def _effect(self, request: Request) -> Response:
        self._enter(request)
        try:
            key = request.headers.get("idempotency-key", "")
            with self._lock:
                self.effects[key] += 1
                held = self.hold_effects_after is not None and (
                    self.effects.total() > self.hold_effects_after
                )
            await asyncio.sleep(float(request.query_params.get("seconds", "0")))
            while held and self.hold_effects_after is not None:
                if await request.is_disconnected():
                    return PlainTextResponse("gone", status_code=499)
                await asyncio.sleep(0.05)
            return JSONResponse({"done": True, "key": key})
        finally:
            self._leave()

    async def _page(self, request: Request) -> Response:
        self._enter(request)
        self._leave()
        html = "<html><script>var x=1;</script><body><h1>Hello</h1><p>World</p></body></html>"
        return Response(html, media_type="text/html")


def _encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "quote": quote(value),
        "quote_all": quote(value, safe=""),
        "quote_plus": quote_plus(value),
        "base64": base64.b64encode(raw).decode(),
        "base64_unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64_url": base64.urlsafe_b64encode(raw).decode(),
        "base64_url_unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "basic": "Basic " + base64.b64encode(b"user:" + raw).decode(),
        "json": json.dumps(value, ensure_ascii=False),
        "json_ascii": json.dumps(value, ensure_ascii=True),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hit_count(server: LocalHttp, path: str) -> int:
    return sum(n for key, n in server.hits.items() if key.startswith(path))


__all__: list[Any] = ["LocalHttp", "hit_count"]
