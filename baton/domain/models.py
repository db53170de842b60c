"""Model references: `provider:model`, for example `scripted:echo` or `openai:gpt-4o-mini`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

# The offline model is labelled wherever it appears: it is for demos and tests only.
SCRIPTED_PROVIDER = "scripted"
SCRIPTED_LABEL = "[scripted offline model, for demos and tests]"
SCRIPTED_MODELS = ("echo", "tools", "search")
# Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM) by base URL.
OPENAI_PROVIDER = "openai"
ANTHROPIC_PROVIDER = "anthropic"


@dataclass(frozen=True)
class Provider:
    """An LLM provider as model references see it. Its adapter, under the same name, is in
    baton/integrations/llm/__init__.py (`ADAPTERS`)."""

    name: str
    # The only models it offers; None: any name (its endpoint knows its own models).
    models: tuple[str, ...] | None = None
    # Runs in the worker, with no key, endpoint or integration.
    offline: bool = False


PROVIDERS: Mapping[str, Provider] = {
    provider.name: provider
    for provider in (
        Provider(SCRIPTED_PROVIDER, models=SCRIPTED_MODELS, offline=True),
        Provider(OPENAI_PROVIDER),
        Provider(ANTHROPIC_PROVIDER),
    )
}
AVAILABLE_PROVIDERS = tuple(PROVIDERS)


def split_model_ref(ref: str) -> tuple[str, str]:
    provider, sep, name = ref.partition(":")
    if not sep or not provider or not name:
        raise ValueError(
            f"model must look like 'provider:model' (for example 'scripted:echo'), got {ref!r}"
        )
    return provider, name


def _check_model_ref(ref: str) -> str:
    provider, name = split_model_ref(ref)
    known = PROVIDERS.get(provider)
    if known is None:
        raise ValueError(
            f"provider {provider!r} is not available in this version; "
            f"available: {', '.join(AVAILABLE_PROVIDERS)}"
        )
    if known.models is not None and name not in known.models:
        raise ValueError(f"the {provider} provider offers {', '.join(known.models)}, not {name!r}")
    return ref


ModelRef = Annotated[str, AfterValidator(_check_model_ref)]
