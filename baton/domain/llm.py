"""The language of LLM calls: messages, tools the model may call, requests and responses.

Pure pydantic and no I/O, because workflow code builds these inside Temporal's sandbox. Every
model here may travel in workflow history, except `ProviderConfig`, which holds a secret."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from baton.domain.egress import EgressPolicy


def _is_empty(value: object) -> bool:
    return not value


class MessageRole(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class ToolDefinition(BaseModel):
    """A tool offered to the model; `parameters` is the JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}


class ToolCall(BaseModel):
    """A call the model asked for. When the model wrote arguments that are not a JSON object,
    `arguments` is empty and `arguments_error` says what was wrong, so the agent loop can tell
    the model instead of failing."""

    id: str
    name: str
    arguments: dict[str, Any] = {}
    arguments_error: str | None = None


class Message(BaseModel):
    """One turn of a transcript. An assistant message may carry `tool_calls`; a tool message
    answers one of them (`tool_call_id`) and `name` is the tool's. Unused tool fields are left
    out when serialised, so a plain message reads as it always has (API, history)."""

    role: MessageRole
    content: str = ""
    tool_calls: list[ToolCall] = Field(default=[], exclude_if=_is_empty)
    tool_call_id: str | None = Field(default=None, exclude_if=_is_empty)
    name: str | None = Field(default=None, exclude_if=_is_empty)


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    # Of `input_tokens`, those the provider read from its prompt cache (priced lower). A
    # default, so usage recorded in histories before it was kept still decodes.
    cached_input_tokens: int = 0


class LlmRequest(BaseModel):
    model: str
    """`provider:name`, for example `openai:gpt-4o-mini` or `scripted:tools`."""
    messages: list[Message]
    tools: list[ToolDefinition] = []
    temperature: float = 0.0
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = None
    """When set, the answer must be a JSON document matching this schema."""


class LlmResponse(BaseModel):
    content: str
    tool_calls: list[ToolCall] = []
    model: str
    usage: TokenUsage = TokenUsage()
    finish_reason: str | None = None
    """As the provider reported it (`stop`, `tool_calls`, `end_turn`, `max_tokens`, ...)."""
    vendor_micros: int = 0
    """What a task's call was charged in vendor credits (micro-units; 0: not charged)."""


LLM_RETRYING_SIGNAL = "llm_retrying"
"""The signal a task's LLM activity sends its workflow before a failed attempt is retried."""


class LlmRetrying(BaseModel):
    """A model call failed and Temporal will try it again at `next_attempt_at`: the workflow
    shows it in its current details until the call is over."""

    attempt: int
    error: str
    next_attempt_at: datetime


class ProviderConfig(BaseModel):
    """How to reach a provider. Holds a secret: it is built inside the activity at call time
    and is never a workflow or activity argument, so it never enters history."""

    api_key: SecretStr | None = None
    base_url: str | None = None
    egress: EgressPolicy = EgressPolicy()
    """What the endpoint may resolve to: every connection to it passes this policy, the one
    http steps pass. The default allows only public addresses."""
    trusted: bool = False
    """True only for the operator's own endpoints (BATON_OPENAI_BASE_URL and
    BATON_ANTHROPIC_BASE_URL): reached without the guard, like the database or Temporal, so
    an operator's local model server need not be opened to every tenant's http steps."""
