"""LLM provider adapters behind one `complete` call, chosen by the model reference's provider:
`openai` (any OpenAI-compatible endpoint), `anthropic`, `scripted` (offline)."""

from __future__ import annotations

from baton.domain.llm import LlmRequest, LlmResponse, ProviderConfig
from baton.domain.models import (
    ANTHROPIC_PROVIDER,
    OPENAI_PROVIDER,
    SCRIPTED_PROVIDER,
    split_model_ref,
)
from baton.errors import ModelNotAvailable
from baton.integrations.llm import anthropic, openai_compat, scripted
from baton.integrations.llm.errors import ProviderError, ProviderNotConfigured
from baton.integrations.llm.streaming import DeltaSink

__all__ = ["DeltaSink", "ProviderError", "ProviderNotConfigured", "complete", "provider_of"]


async def complete(
    request: LlmRequest,
    *,
    config: ProviderConfig | None = None,
    on_delta: DeltaSink | None = None,
) -> LlmResponse:
    """One call to the model `request.model` names. Text reaches `on_delta` piece by piece as it
    streams in. Raises `ProviderError` when the provider fails (saying whether to retry) and
    `ModelNotAvailable` for a model reference no provider here serves."""
    provider, name = _split(request.model)
    if provider == SCRIPTED_PROVIDER:
        return await scripted.complete(name, request, on_delta=on_delta)
    if provider == OPENAI_PROVIDER:
        return await openai_compat.complete(
            name, request, config=config or ProviderConfig(), on_delta=on_delta
        )
    if provider == ANTHROPIC_PROVIDER:
        return await anthropic.complete(
            name, request, config=config or ProviderConfig(), on_delta=on_delta
        )
    raise ModelNotAvailable(f"provider {provider!r} is not available in this version")


def provider_of(model_ref: str) -> str:
    return _split(model_ref)[0]


def _split(model_ref: str) -> tuple[str, str]:
    try:
        return split_model_ref(model_ref)
    except ValueError as exc:
        raise ModelNotAvailable(str(exc)) from exc
