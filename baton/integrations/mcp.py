"""Model Context Protocol servers as Baton reaches them, through the official `mcp` client:
list a server's tools, call one. Each call opens its own session and closes it, bounded in
time as a whole, so a server that hangs or is gone fails the call naming the cause, never
holds it.

Over HTTP the client's every connection passes the egress guard (the httpx2 client of
`http.provider_client`, which the `mcp` transport accepts); the transport itself follows a
redirect only within the endpoint's origin, so the key never travels to another host. Over
stdio the server is a process on the worker, started with the command looked up here and
only the `mcp` package's safe environment (PATH, HOME and the like, none of the worker's
settings)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from baton.domain.integrations import McpServer, McpTransport
from baton.errors import BatonError, InvalidInput
from baton.integrations import http

# A whole listing or call, connection and handshake included.
DEFAULT_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 10.0


class McpUnavailable(BatonError):
    """The server could not be reached or did not answer as MCP; `retryable` says whether
    trying again may help (a connection refused may, a refused destination never)."""

    code = "mcp_unavailable"
    status_code = 502

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message, details={"retryable": retryable})
        self.retryable = retryable


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class McpResult:
    is_error: bool
    structured: Any
    text: str

    @property
    def output(self) -> Any:
        """The structured content, else the text."""
        return self.structured if self.structured is not None else self.text


def find_command(command: str) -> str:
    """The executable `command` names: an absolute path, or a name on this process's PATH.
    InvalidInput names it when there is none."""
    if os.path.isabs(command):
        found = command if os.path.isfile(command) and os.access(command, os.X_OK) else None
    elif os.sep in command:
        found = None  # relative to what? the worker's working directory is no contract
    else:
        found = shutil.which(command)
    if found is None:
        raise InvalidInput(
            f"command: {command!r} is not an executable "
            + ("file" if os.path.isabs(command) else "found on PATH")
            + "; give an absolute path or the name of a program on PATH",
            details=[{"field": "command", "message": "no such executable"}],
        )
    return found


async def list_tools(server: McpServer, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[McpTool]:
    """Every tool the server lists, page after page."""
    tools: list[McpTool] = []
    async with _session(server, timeout) as client:
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += [
                McpTool(tool.name, tool.description or "", dict(tool.input_schema))
                for tool in page.tools
            ]
            cursor = page.next_cursor
            if cursor is None:
                return tools


async def call_tool(
    server: McpServer,
    tool: str,
    arguments: dict[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> McpResult:
    """The tool's result, an `isError` one included: what it means is the caller's call."""
    async with _session(server, timeout) as client:
        result = await client.call_tool(tool, arguments)
    return _result_of(result)


@asynccontextmanager
async def _session(server: McpServer, timeout: float) -> AsyncIterator[Client]:
    """A connected, initialised client; every failure inside, the caller's included, comes
    out as McpUnavailable unless it is a BatonError already."""
    failed_statuses: list[int] = []
    try:
        async with asyncio.timeout(timeout):
            async with (
                _http_client(server, failed_statuses) as http_client,
                Client(_transport(server, http_client), read_timeout_seconds=timeout) as c,
            ):
                yield c
    except TimeoutError:
        raise McpUnavailable(
            f"{server.where} did not answer within {timeout:g}s", retryable=True
        ) from None
    except BatonError:
        raise
    except Exception as exc:
        raise _unavailable(server, exc, failed_statuses) from None


@asynccontextmanager
async def _http_client(
    server: McpServer, failed_statuses: list[int]
) -> AsyncIterator[httpx2.AsyncClient | None]:
    """The guarded client, which notes the HTTP error status of each message it sends in
    `failed_statuses`: the `mcp` transport turns them into a JSON-RPC error that no longer
    says which it was."""
    if server.transport is not McpTransport.http:
        yield None
        return

    async def note_status(response: httpx2.Response) -> None:
        # The messages go by POST; a GET stream a server does not offer (405) is no failure.
        if response.status_code >= 400 and response.request.method == "POST":
            failed_statuses.append(response.status_code)

    client = http.provider_client(server.egress)
    client.timeout = httpx2.Timeout(DEFAULT_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)
    client.event_hooks["response"].append(note_status)
    if server.api_key is not None:
        client.headers["Authorization"] = f"Bearer {server.api_key.get_secret_value()}"
    async with client:
        yield client


def _transport(server: McpServer, client: httpx2.AsyncClient | None) -> Any:
    if server.transport is McpTransport.http:
        assert server.url is not None and client is not None
        return streamable_http_client(server.url, http_client=client)
    assert server.command is not None
    try:
        command = find_command(server.command)
    except InvalidInput as exc:
        raise McpUnavailable(f"{server.where}: {exc.message}", retryable=False) from None
    return StdioServerParameters(command=command, args=list(server.args))


def _unavailable(server: McpServer, exc: BaseException, failed_statuses: list[int]) -> BatonError:
    cause = _root_cause(exc)
    if isinstance(cause, http.BlockedDestination):
        return http.BlockedDestination(f"{server.where} was not called: {cause.message}")
    if failed_statuses:
        status = failed_statuses[-1]
        retryable = status in (408, 409, 429) or status >= 500
        hint = " (is its API key right?)" if status in (401, 403) else ""
        return McpUnavailable(f"{server.where} answered HTTP {status}{hint}", retryable=retryable)
    if isinstance(cause, MCPError):
        return McpUnavailable(f"{server.where} answered an error: {cause.message}", retryable=False)
    if isinstance(cause, httpx2.TransportError | OSError):
        return McpUnavailable(f"could not reach {server.where}: {cause}", retryable=True)
    return McpUnavailable(f"{server.where} failed: {type(cause).__name__}: {cause}", retryable=True)


def _root_cause(exc: BaseException) -> BaseException:
    """The first failure behind the task groups and wrappers of the `mcp` client: a
    refusal of the egress guard wins wherever it is in the chain."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
            continue
        for link in (current.__cause__, current.__context__):
            if link is not None:
                pending.append(link)
    leaves = [e for e in seen if not isinstance(e, BaseExceptionGroup)]
    refused = [e for e in leaves if isinstance(e, http.BlockedDestination)]
    return (refused or leaves or [exc])[0]


def _result_of(result: CallToolResult) -> McpResult:
    parts = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        else:
            parts.append(json.dumps(block.model_dump(mode="json", exclude_none=True))[:2000])
    return McpResult(
        is_error=bool(result.is_error), structured=result.structured_content, text="\n".join(parts)
    )
