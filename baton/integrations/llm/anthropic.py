"""Anthropic's Messages API.

Baton's transcript maps onto it like this: system messages become the `system` parameter, an
assistant's tool calls become `tool_use` blocks, and tool messages become `tool_result` blocks
at the start of the next user message. `temperature` is not sent: the API version the SDK
speaks (2026-10-21) refuses sampling parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncStream, Omit, omit
from anthropic.types import (
    InputJSONDelta,
    MessageParam,
    OutputConfigParam,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStreamEvent,
    TextBlock,
    TextBlockParam,
    TextDelta,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
    ToolUseBlockParam,
)
from anthropic.types.message_delta_usage import MessageDeltaUsage
from anthropic.types.usage import Usage

from baton.domain.llm import (
    LlmRequest,
    LlmResponse,
    Message,
    MessageRole,
    ProviderConfig,
    TokenUsage,
    ToolDefinition,
)
from baton.domain.models import ANTHROPIC_PROVIDER
from baton.integrations.llm import egress, errors
from baton.integrations.llm.streaming import DeltaSink, TextCollector, tool_call

DEFAULT_BASE_URL = "https://api.anthropic.com"
# The API requires a limit; this one fits every current model.
DEFAULT_MAX_TOKENS = 4096
# A gateway in front of Anthropic may need no key, but the client needs something to send.
_PLACEHOLDER_KEY = "no-key"


async def complete(
    name: str, request: LlmRequest, *, config: ProviderConfig, on_delta: DeltaSink | None = None
) -> LlmResponse:
    client, base_url, api_key = _client(config)
    system, messages = _conversation(request.messages)
    with _failures(base_url, api_key):
        async with client:
            stream = await client.messages.create(
                model=name,
                max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                messages=messages,
                system=system or omit,
                tools=[_tool(t) for t in request.tools] if request.tools else omit,
                output_config=_output_config(request.json_schema),
                stream=True,
            )
            return await _read(stream, model=request.model, on_delta=on_delta)


async def list_models(config: ProviderConfig) -> list[str]:
    """The first page of the API's models (`GET /v1/models`): a connection check."""
    client, base_url, api_key = _client(config)
    with _failures(base_url, api_key):
        async with client:
            page = await client.models.list(limit=100)
            return [model.id for model in page.data]


def _client(config: ProviderConfig) -> tuple[anthropic.AsyncAnthropic, str, str | None]:
    """A client with its own retries off (Temporal's are the ones), its base URL and the key
    a failure must not show."""
    api_key = config.api_key.get_secret_value() if config.api_key else None
    if not api_key and config.base_url is None:
        raise errors.ProviderNotConfigured(ANTHROPIC_PROVIDER)
    base_url = config.base_url or DEFAULT_BASE_URL
    client = anthropic.AsyncAnthropic(
        api_key=api_key or _PLACEHOLDER_KEY,
        base_url=base_url,
        max_retries=0,
        http_client=egress.http_client(config),
    )
    return client, base_url, api_key


@contextmanager
def _failures(base_url: str, api_key: str | None) -> Iterator[None]:
    """The client's failures as ProviderErrors: retryable or not, the key redacted."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        if exc.status_code < 400:  # an `error` event inside a stream that began well
            raise errors.stream_failed(
                ANTHROPIC_PROVIDER, detail=exc.api_message or exc.message, secret=api_key
            ) from exc
        raise errors.http_error(
            ANTHROPIC_PROVIDER,
            status=exc.status_code,
            headers=exc.response.headers,
            body=exc.body,
            fallback=exc.message,
            secret=api_key,
        ) from exc
    except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
        # The SDK does not wrap a connection lost while the stream is being read.
        raise errors.connection_failed(
            ANTHROPIC_PROVIDER, base_url=base_url, cause=exc, secret=api_key
        ) from exc


@dataclass
class _ToolUse:
    id: str
    name: str
    initial_input: object
    partial_json: list[str] = field(default_factory=list)

    def raw_arguments(self) -> str:
        if self.partial_json:
            return "".join(self.partial_json)
        # A block that arrived whole carries its input in content_block_start.
        return json.dumps(self.initial_input) if self.initial_input else ""


async def _read(
    stream: AsyncStream[RawMessageStreamEvent], *, model: str, on_delta: DeltaSink | None
) -> LlmResponse:
    text = TextCollector(on_delta)
    tool_uses: dict[int, _ToolUse] = {}
    usage = TokenUsage()
    stop_reason: str | None = None
    async for event in stream:
        if isinstance(event, RawMessageStartEvent):
            usage = _usage(event.message.usage, usage)
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, TextBlock):
                await text.add(block.text)
            elif isinstance(block, ToolUseBlock):
                tool_uses[event.index] = _ToolUse(block.id, block.name, block.input)
        elif isinstance(event, RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextDelta):
                await text.add(delta.text)
            elif isinstance(delta, InputJSONDelta) and event.index in tool_uses:
                tool_uses[event.index].partial_json.append(delta.partial_json)
        elif isinstance(event, RawMessageDeltaEvent):
            stop_reason = event.delta.stop_reason or stop_reason
            usage = _usage(event.usage, usage)
    return LlmResponse(
        content=text.text,
        tool_calls=[
            tool_call(id=use.id, name=use.name, raw_arguments=use.raw_arguments())
            for _, use in sorted(tool_uses.items())
        ],
        model=model,
        usage=usage,
        finish_reason=stop_reason,
    )


def _usage(reported: Usage | MessageDeltaUsage, previous: TokenUsage) -> TokenUsage:
    """message_start reports input tokens; message_delta reports cumulative output tokens and
    sometimes input tokens again. Cache reads and writes are input too; the reads are also
    counted as cached input (priced lower)."""
    input_tokens, cached = previous.input_tokens, previous.cached_input_tokens
    if reported.input_tokens is not None:
        cached = reported.cache_read_input_tokens or 0
        input_tokens = reported.input_tokens + (reported.cache_creation_input_tokens or 0) + cached
    output_tokens = reported.output_tokens
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=previous.output_tokens if output_tokens is None else output_tokens,
        cached_input_tokens=cached,
    )


def _conversation(messages: list[Message]) -> tuple[str, list[MessageParam]]:
    system: list[str] = []
    conversation: list[MessageParam] = []
    tool_results: list[ToolResultBlockParam] = []
    for message in messages:
        if message.role is MessageRole.system:
            system.append(message.content)
        elif message.role is MessageRole.tool:
            # Results of one turn's calls must all arrive in the user message that follows it.
            result: ToolResultBlockParam = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
            }
            if message.content:
                result["content"] = message.content
            tool_results.append(result)
        elif message.role is MessageRole.user:
            if tool_results:
                text: TextBlockParam = {"type": "text", "text": message.content}
                conversation.append({"role": "user", "content": [*tool_results, text]})
                tool_results = []
            else:
                conversation.append({"role": "user", "content": message.content})
        else:
            if tool_results:
                conversation.append({"role": "user", "content": tool_results})
                tool_results = []
            conversation.append({"role": "assistant", "content": _assistant_content(message)})
    if tool_results:
        conversation.append({"role": "user", "content": tool_results})
    return "\n\n".join(system), conversation


def _assistant_content(message: Message) -> str | list[TextBlockParam | ToolUseBlockParam]:
    if not message.tool_calls:
        return message.content
    blocks: list[TextBlockParam | ToolUseBlockParam] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    return blocks


def _tool(tool: ToolDefinition) -> ToolParam:
    param: ToolParam = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        param["description"] = tool.description
    return param


def _output_config(schema: dict[str, Any] | None) -> OutputConfigParam | Omit:
    if schema is None:
        return omit
    return {"format": {"type": "json_schema", "schema": schema}}
