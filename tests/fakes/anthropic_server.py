"""`POST /v1/messages` as Anthropic streams it: named SSE events message_start,
content_block_start, content_block_delta (text_delta, input_json_delta), content_block_stop,
message_delta, message_stop, and `error` when a stream fails midway."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.fakes import FakeProvider, Reply

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass
class ToolUse:
    id: str
    name: str
    partial_json: tuple[str, ...]


class FakeAnthropic(FakeProvider):
    path = "/v1/messages"

    @property
    def base_url(self) -> str:
        return self.origin

    def models(self) -> Any:
        model = {
            "id": "claude-fake",
            "type": "model",
            "display_name": "Claude Fake",
            "created_at": "2026-01-01T00:00:00Z",
        }
        return {
            "data": [model],
            "has_more": False,
            "first_id": "claude-fake",
            "last_id": "claude-fake",
        }

    def error_body(self, status: int, message: str) -> Any:
        return {
            "type": "error",
            "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message},
        }

    def reply_events(self, *events: tuple[str, dict[str, Any]]) -> None:
        self.queue(Reply(events=[(name, json.dumps(data)) for name, data in events]))

    def reply(
        self,
        *text: str,
        tool_uses: tuple[ToolUse, ...] = (),
        input_tokens: int = 13,
        output_tokens: int = 9,
        cache_read_input_tokens: int = 0,
    ) -> None:
        """A text block streamed in `text` pieces (if any), then the tool_use blocks."""
        events: list[tuple[str, dict[str, Any]]] = [
            message_start(input_tokens, cache_read_input_tokens)
        ]
        index = 0
        if text:
            events += [
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                *(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                    for piece in text
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ]
            index = 1
        for use in tool_uses:
            events += [
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": use.id,
                            "name": use.name,
                            "input": {},
                        },
                    },
                ),
                *(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                    )
                    for part in use.partial_json
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": index}),
            ]
            index += 1
        stop_reason = "tool_use" if tool_uses else "end_turn"
        events += [
            message_delta(stop_reason, output_tokens),
            ("message_stop", {"type": "message_stop"}),
        ]
        self.reply_events(*events)


def message_start(
    input_tokens: int, cache_read_input_tokens: int = 0
) -> tuple[str, dict[str, Any]]:
    """Anthropic counts cache reads apart from `input_tokens` (uncached input)."""
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": "claude-fake",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": cache_read_input_tokens,
                    "output_tokens": 1,
                },
            },
        },
    )


def message_delta(stop_reason: str, output_tokens: int) -> tuple[str, dict[str, Any]]:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
    )


def stream_error(message: str) -> tuple[str, dict[str, Any]]:
    return ("error", {"type": "error", "error": {"type": "overloaded_error", "message": message}})
