"""`POST /v1/chat/completions` as OpenAI streams it: `data: {chunk}` lines, then
`data: [DONE]`. The chunk builders can leave out whatever real servers leave out."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import FakeProvider, Reply


class FakeOpenAI(FakeProvider):
    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"message": message, "type": "invalid_request_error", "code": None}}

    def models(self) -> Any:
        return {
            "object": "list",
            "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
        }

    def reply_chunks(self, *chunks: dict[str, Any]) -> None:
        events: list[tuple[str | None, str]] = [(None, json.dumps(c)) for c in chunks]
        self.queue(Reply(events=[*events, (None, "[DONE]")]))

    def reply_text(
        self,
        *pieces: str,
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        cached_tokens: int | None = None,
    ) -> None:
        self.reply_chunks(
            chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": piece}) for piece in pieces),
            chunk({}, finish_reason="stop"),
            usage_chunk(prompt_tokens, completion_tokens, cached_tokens=cached_tokens),
        )


def chunk(delta: dict[str, Any], *, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(
    prompt_tokens: int, completion_tokens: int, *, cached_tokens: int | None = None
) -> dict[str, Any]:
    """The last chunk when `stream_options.include_usage` is set: usage and no choices.
    `cached_tokens`: the prompt tokens read from cache, in `prompt_tokens_details` as OpenAI
    sends them (None: left out, as other OpenAI-compatible servers do)."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens, "audio_tokens": 0}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [],
        "usage": usage,
    }


def tool_calls(*deltas: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return chunk({"tool_calls": list(deltas)}, finish_reason=finish_reason)


def tool_delta(
    *,
    index: int | None = None,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> dict[str, Any]:
    """One tool-call delta with only the fields given: OpenAI sends `index` always and `id`
    and `name` on a call's first delta only; other servers differ."""
    delta: dict[str, Any] = {}
    if index is not None:
        delta["index"] = index
    if id is not None:
        delta["id"] = id
        delta["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        delta["function"] = function
    return delta
