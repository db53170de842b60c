"""An answer arriving in pieces: text passed on as it comes, tool calls assembled at the end."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from baton.domain.llm import ToolCall

DeltaSink = Callable[[str], Awaitable[None]]
"""Receives each piece of the answer's text as it arrives, in order."""

_MAX_QUOTED = 200


class TextCollector:
    def __init__(self, on_delta: DeltaSink | None) -> None:
        self._on_delta = on_delta
        self._parts: list[str] = []

    async def add(self, text: str | None) -> None:
        if not text:
            return
        self._parts.append(text)
        if self._on_delta is not None:
            await self._on_delta(text)

    @property
    def text(self) -> str:
        return "".join(self._parts)


def tool_call(*, id: str, name: str, raw_arguments: str) -> ToolCall:
    """A tool call from the arguments text the model wrote. Models do write invalid JSON; the
    call then carries `arguments_error` for the agent loop to report back to the model."""
    raw = raw_arguments.strip()
    if not raw:
        return ToolCall(id=id, name=name)
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ToolCall(
            id=id,
            name=name,
            arguments_error=f"the arguments are not valid JSON ({exc}): {_quote(raw)}",
        )
    if not isinstance(arguments, dict):
        return ToolCall(
            id=id,
            name=name,
            arguments_error=f"the arguments must be a JSON object, got {_quote(raw)}",
        )
    return ToolCall(id=id, name=name, arguments=arguments)


def _quote(raw: str) -> str:
    return raw if len(raw) <= _MAX_QUOTED else raw[:_MAX_QUOTED] + "..."
