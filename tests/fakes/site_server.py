"""A small web site on 127.0.0.1 (uvicorn in a thread) whose documents a test sets and
changes: each answers with the validator `validator` names, an `ETag` (its content's hash)
or a `Last-Modified` (when it was last set), or none, and honours `If-None-Match` or
`If-Modified-Since` with 304, as a real server does. `answers` records (path, status) of every
request once answered, `asked` every path as its request arrives; `fail` makes a path answer
500 and `slow` makes one wait that many seconds first."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from email.utils import formatdate

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class FakeSite:
    def __init__(self) -> None:
        self.documents: dict[str, tuple[str, str]] = {}  # path -> (body, content type)
        self.fail: set[str] = set()
        self.slow: dict[str, float] = {}
        self.asked: list[str] = []
        self.validator: str | None = "etag"  # or "last-modified", or None
        self.changed_at: dict[str, str] = {}
        self.answers: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        app = Starlette(routes=[Route("/{path:path}", self._serve)])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def page(self, path: str, text: str) -> None:
        html = f"<html><body><h1>{path}</h1><p>{text}</p></body></html>"
        if self.documents.get(path, ("", ""))[0] != html:
            # Whole seconds, as HTTP dates are: each change a second after the last.
            self.changed_at[path] = formatdate(time.time() + len(self.changed_at), usegmt=True)
        self.documents[path] = (html, "text/html")

    def sitemap(self, path: str, pages: list[str]) -> None:
        locs = "".join(f"<url><loc>{self.url(page)}</loc></url>" for page in pages)
        body = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>'
        self.documents[path] = (body, "application/xml")

    def statuses(self, status: int) -> list[str]:
        with self._lock:
            return [path for path, answered in self.answers if answered == status]

    def reset(self) -> None:
        with self._lock:
            self.answers.clear()
            self.asked.clear()

    def start(self) -> FakeSite:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "site server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _serve(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            self.asked.append(path)
        await asyncio.sleep(self.slow.get(path, 0))
        response = self._answer(
            path, request.headers.get("if-none-match"), request.headers.get("if-modified-since")
        )
        with self._lock:
            self.answers.append((path, response.status_code))
        return response

    def _answer(
        self, path: str, if_none_match: str | None, if_modified_since: str | None
    ) -> Response:
        if path in self.fail:
            return Response("broken", status_code=500)
        if path not in self.documents:
            return Response("not here", status_code=404)
        body, content_type = self.documents[path]
        headers: dict[str, str] = {}
        if self.validator == "etag":
            headers["etag"] = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
            if if_none_match == headers["etag"]:
                return Response(status_code=304, headers=headers)
        elif self.validator == "last-modified" and path in self.changed_at:
            headers["last-modified"] = self.changed_at[path]
            if if_modified_since == headers["last-modified"]:
                return Response(status_code=304, headers=headers)
        return Response(body, media_type=content_type, headers=headers)
