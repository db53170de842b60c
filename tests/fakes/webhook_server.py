"""A webhook receiver on 127.0.0.1 and a free port (uvicorn in a thread): it records the JSON
body of every POST to `/hook/<anything>` in `received` and answers `status` (200 unless a
test sets another), so tests send Baton's usage alerts over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeWebhook:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        # How many requests to come are answered 503 before `status` again, and the
        # Idempotency-Key of every request, failed or not.
        self.fail_first = 0
        self.keys: list[str | None] = []
        self._lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        app = Starlette(routes=[Route("/hook/{name}", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def url(self, name: str = "alerts") -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeWebhook:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "webhook receiver did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _hook(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        with self._lock:
            self.keys.append(request.headers.get("idempotency-key"))
            if self.fail_first > 0:
                self.fail_first -= 1
                return JSONResponse({"ok": False}, status_code=503)
            self.received.append(body)
        return JSONResponse({"ok": self.status < 300}, status_code=self.status)
