"""LLM provider adapters behind one `complete` call, chosen by the model reference's provider:
`openai` (any OpenAI-compatible endpoint), `anthropic`, `scripted` (offline).

Adding a provider: its entry in baton/domain/models.py (`PROVIDERS`: what model references
may name), its adapter module here and its line in `ADAPTERS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from baton.domain.llm import LlmRequest, LlmResponse, ProviderConfig
from baton.domain.models import (
    ANTHROPIC_PROVIDER,
    OPENAI_PROVIDER,
    PROVIDERS,
    SCRIPTED_PROVIDER,
    split_model_ref,
)
from baton.errors import ModelNotAvailable
from baton.integrations.llm import anthropic, openai_compat, scripted
from baton.integrations.llm.errors import ProviderError, ProviderNotConfigured
from baton.integrations.llm.streaming import DeltaSink

__all__ = [
    "ADAPTERS",
    "MODEL_LISTS",
    "DeltaSink",
    "ProviderError",
    "ProviderNotConfigured",
    "complete",
    "provider_of",
]


class Adapter(Protocol):
    """One call to the provider's model `name` (the part of the model reference after the
    colon). `config` is how to reach it (empty when nothing is configured)."""

    async def __call__(
        self,
        name: str,
        request: LlmRequest,
        *,
        config: ProviderConfig,
        on_delta: DeltaSink | None = None,
    ) -> LlmResponse: ...


# Each provider's adapter, by the name model references give it.
ADAPTERS: Mapping[str, Adapter] = {
    SCRIPTED_PROVIDER: scripted.complete,
    OPENAI_PROVIDER: openai_compat.complete,
    ANTHROPIC_PROVIDER: anthropic.complete,
}
# Each provider's models list, which checks that its endpoint and key work.
MODEL_LISTS: Mapping[str, Callable[[ProviderConfig], Awaitable[list[str]]]] = {
    OPENAI_PROVIDER: openai_compat.list_models,
    ANTHROPIC_PROVIDER: anthropic.list_models,
}
if set(ADAPTERS) != set(PROVIDERS):
    raise RuntimeError(f"LLM providers {sorted(PROVIDERS)} have adapters {sorted(ADAPTERS)}")


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
    adapter = ADAPTERS.get(provider)
    if adapter is None:
        raise ModelNotAvailable(f"provider {provider!r} is not available in this version")
    return await adapter(name, request, config=config or ProviderConfig(), on_delta=on_delta)


def provider_of(model_ref: str) -> str:
    return _split(model_ref)[0]


def _split(model_ref: str) -> tuple[str, str]:
    try:
        return split_model_ref(model_ref)
    except ValueError as exc:
        raise ModelNotAvailable(str(exc)) from exc
