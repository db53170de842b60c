"""A small MCP server built with the `mcp` package, so tests run Baton's MCP client against
the real protocol: `FakeMcp` serves it over streamable HTTP on 127.0.0.1 and a free port (in a
thread of the test process), records the `Authorization` header of every request and may
require a key (`required_key`); run as a script (this file with `sys.executable`) it speaks
stdio.

Its tools: `get_current_time` (structured content), `shout` (text only), `fail` (an
`isError` result with the server's text), `sleep` and `environment_names`."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

FIXED_TIME = "2026-12-01T12:00:00"


def build_server() -> MCPServer:
    server: MCPServer = MCPServer("baton-test-tools")

    @server.tool(description="The current time in a timezone (always noon, for tests)")
    def get_current_time(timezone: str) -> dict[str, Any]:
        return {"timezone": timezone, "datetime": FIXED_TIME, "is_dst": False}

    @server.tool(description="The text in capitals", structured_output=False)
    def shout(text: str) -> str:
        return text.upper() + "!"

    @server.tool(description="Always fails, with the reason given")
    def fail(reason: str) -> str:
        raise ToolError(f"the server refused: {reason}")

    @server.tool(description="Answers after `seconds`")
    async def sleep(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "awake"

    @server.tool(description="The names of the server's environment variables")
    def environment_names() -> list[str]:
        return sorted(os.environ)

    return server


class _Authorization:
    """Records each request's `Authorization` header, and answers 401 to a request without
    the required one, when the test requires one."""

    def __init__(self, app: ASGIApp, fake: FakeMcp) -> None:
        self._app = app
        self._fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sent = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            self._fake.authorizations.append(sent)
            required = self._fake.required_key
            if required is not None and sent != f"Bearer {required}":
                await PlainTextResponse("unauthorized", 401)(scope, receive, send)
                return
        await self._app(scope, receive, send)


class FakeMcp:
    """The server over streamable HTTP at `url`, served by uvicorn in a thread."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.required_key: str | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        app = build_server().streamable_http_app(stateless_http=True, json_response=True)
        config = uvicorn.Config(_Authorization(app, self), log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def reset(self) -> None:
        self.authorizations.clear()
        self.required_key = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


if __name__ == "__main__":
    build_server().run("stdio")
