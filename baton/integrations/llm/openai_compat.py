"""OpenAI's Chat Completions protocol, which OpenAI and most self-hosted servers speak (vLLM,
Ollama, llama.cpp server, LiteLLM): one adapter, pointed at any of them by base URL.

Servers differ in how they stream tool calls, and every variant seen in the wild is accepted:
`index` on every delta (OpenAI) or on none, `id` only on a call's first delta, a whole call in
one delta, several calls at once, usage in a last chunk without choices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from openai import AsyncStream, Omit, omit
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall
from openai.types.shared_params import FunctionDefinition, ResponseFormatJSONSchema

from baton.domain.llm import (
    LlmRequest,
    LlmResponse,
    Message,
    MessageRole,
    ProviderConfig,
    TokenUsage,
    ToolCall,
    ToolDefinition,
)
from baton.domain.models import OPENAI_PROVIDER
from baton.integrations.llm import egress, errors
from baton.integrations.llm.streaming import DeltaSink, TextCollector, tool_call

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Self-hosted servers usually need no key, but the client refuses to start without one.
_PLACEHOLDER_KEY = "no-key"


@dataclass(frozen=True)
class Connection:
    """A client for one call, with its own retries off (Temporal's are the ones), and what a
    failure names: the base URL, and the key to redact."""

    client: openai.AsyncOpenAI
    base_url: str
    api_key: str | None


def connect(config: ProviderConfig) -> Connection:
    api_key = config.api_key.get_secret_value() if config.api_key else None
    if not api_key and config.base_url is None:
        raise errors.ProviderNotConfigured(OPENAI_PROVIDER)
    base_url = config.base_url or DEFAULT_BASE_URL
    client = openai.AsyncOpenAI(
        api_key=api_key or _PLACEHOLDER_KEY,
        base_url=base_url,
        max_retries=0,
        http_client=egress.http_client(config),
    )
    return Connection(client=client, base_url=base_url, api_key=api_key)


@contextmanager
def failures(connection: Connection, provider: str = OPENAI_PROVIDER) -> Iterator[None]:
    """The client's failures as ProviderErrors: retryable or not, the key redacted."""
    api_key = connection.api_key
    try:
        yield
    except openai.APIStatusError as exc:
        raise errors.http_error(
            provider,
            status=exc.status_code,
            headers=exc.response.headers,
            body=exc.body,
            fallback=exc.message,
            secret=api_key,
        ) from exc
    except (openai.APIConnectionError, httpx2.TransportError) as exc:
        raise errors.connection_failed(
            provider, base_url=connection.base_url, cause=exc, secret=api_key
        ) from exc
    except openai.APIError as exc:
        raise errors.stream_failed(provider, detail=exc.message, secret=api_key) from exc


async def complete(
    name: str, request: LlmRequest, *, config: ProviderConfig, on_delta: DeltaSink | None = None
) -> LlmResponse:
    connection = connect(config)
    client = connection.client
    with failures(connection):
        async with client:
            stream = await client.chat.completions.create(
                model=name,
                messages=[_message(m) for m in request.messages],
                tools=[_tool(t) for t in request.tools] if request.tools else omit,
                temperature=request.temperature,
                # OpenAI's newer models refuse `max_tokens`; many compatible servers only know it.
                max_completion_tokens=request.max_tokens if config.base_url is None else omit,
                max_tokens=request.max_tokens if config.base_url is not None else omit,
                response_format=_response_format(request.json_schema),
                stream=True,
                stream_options={"include_usage": True},
            )
            return await _read(stream, model=request.model, on_delta=on_delta)


async def list_models(config: ProviderConfig) -> list[str]:
    """The first page of the endpoint's models (`GET /models`): a connection check."""
    connection = connect(config)
    with failures(connection):
        async with connection.client:
            page = await connection.client.models.list()
            return [model.id for model in page.data]


async def _read(
    stream: AsyncStream[ChatCompletionChunk], *, model: str, on_delta: DeltaSink | None
) -> LlmResponse:
    text = TextCollector(on_delta)
    calls = _ToolCallAssembler()
    usage = TokenUsage()
    finish_reason: str | None = None
    async for chunk in stream:
        # Read leniently: the client does not validate chunks, and servers leave fields out.
        if (chunk_usage := getattr(chunk, "usage", None)) is not None:
            details = getattr(chunk_usage, "prompt_tokens_details", None)
            usage = TokenUsage(
                input_tokens=chunk_usage.prompt_tokens or 0,
                output_tokens=chunk_usage.completion_tokens or 0,
                cached_input_tokens=getattr(details, "cached_tokens", None) or 0,
            )
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0) != 0:
                continue
            delta = getattr(choice, "delta", None)
            if delta is not None:
                await text.add(delta.content)
                calls.add(delta.tool_calls or [])
            finish_reason = choice.finish_reason or finish_reason
    return LlmResponse(
        content=text.text,
        tool_calls=calls.finish(),
        model=model,
        usage=usage,
        finish_reason=finish_reason,
    )


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _ToolCallAssembler:
    """Finds the call each delta continues: by `index` when the server sends one, else by
    `id`, else by position among several deltas in one chunk, else the latest call."""

    def __init__(self) -> None:
        self._calls: list[_PartialCall] = []
        self._by_index: dict[int, _PartialCall] = {}
        self._by_id: dict[str, _PartialCall] = {}

    def add(self, deltas: list[ChoiceDeltaToolCall]) -> None:
        for position, delta in enumerate(deltas):
            call = self._call_for(delta, position=position, several=len(deltas) > 1)
            function = delta.function
            if function is None:
                continue
            if function.name and not call.name:
                call.name = function.name
            arguments: Any = function.arguments
            if isinstance(arguments, dict):  # some servers send an object, not its JSON text
                arguments = json.dumps(arguments)
            if arguments:
                call.arguments.append(arguments)

    def finish(self) -> list[ToolCall]:
        return [
            tool_call(
                id=call.id or f"call_{number}",
                name=call.name,
                raw_arguments="".join(call.arguments),
            )
            for number, call in enumerate(self._calls)
        ]

    def _call_for(
        self, delta: ChoiceDeltaToolCall, *, position: int, several: bool
    ) -> _PartialCall:
        index: int | None = getattr(delta, "index", None)
        call_id = delta.id or None
        if index is not None:
            call = self._by_index.get(index)
            # A new id at an index already in use: a server that numbers every call 0.
            if call is None or (call_id and call.id and call.id != call_id):
                call = self._by_id.get(call_id) if call_id else None
                call = call or self._new()
                self._by_index[index] = call
        elif call_id:
            call = self._by_id.get(call_id) or self._new()
        elif several:
            call = self._calls[position] if position < len(self._calls) else self._new()
        else:
            call = self._calls[-1] if self._calls else self._new()
        if call_id and not call.id:
            call.id = call_id
            self._by_id[call_id] = call
        return call

    def _new(self) -> _PartialCall:
        call = _PartialCall()
        self._calls.append(call)
        return call


def _message(message: Message) -> ChatCompletionMessageParam:
    if message.role is MessageRole.system:
        return {"role": "system", "content": message.content}
    if message.role is MessageRole.user:
        return {"role": "user", "content": message.content}
    if message.role is MessageRole.tool:
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    assistant: ChatCompletionAssistantMessageParam = {"role": "assistant"}
    if message.tool_calls:
        assistant["content"] = message.content or None
        assistant["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    else:
        assistant["content"] = message.content
    return assistant


def _tool(tool: ToolDefinition) -> ChatCompletionFunctionToolParam:
    function: FunctionDefinition = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _response_format(schema: dict[str, Any] | None) -> ResponseFormatJSONSchema | Omit:
    if schema is None:
        return omit
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
