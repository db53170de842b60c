"""Model references: `provider:model`, for example `scripted:echo` or `openai:gpt-4o-mini`."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

# The offline model is labelled wherever it appears: it is for demos and tests only.
SCRIPTED_PROVIDER = "scripted"
SCRIPTED_LABEL = "[scripted offline model, for demos and tests]"
SCRIPTED_MODELS = ("echo", "tools")
# Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM) by base URL.
OPENAI_PROVIDER = "openai"
ANTHROPIC_PROVIDER = "anthropic"
AVAILABLE_PROVIDERS = (SCRIPTED_PROVIDER, OPENAI_PROVIDER, ANTHROPIC_PROVIDER)


def split_model_ref(ref: str) -> tuple[str, str]:
    provider, sep, name = ref.partition(":")
    if not sep or not provider or not name:
        raise ValueError(
            f"model must look like 'provider:model' (for example 'scripted:echo'), got {ref!r}"
        )
    return provider, name


def _check_model_ref(ref: str) -> str:
    provider, name = split_model_ref(ref)
    if provider not in AVAILABLE_PROVIDERS:
        raise ValueError(
            f"provider {provider!r} is not available in this version; "
            f"available: {', '.join(AVAILABLE_PROVIDERS)}"
        )
    if provider == SCRIPTED_PROVIDER and name not in SCRIPTED_MODELS:
        raise ValueError(f"the scripted provider offers {', '.join(SCRIPTED_MODELS)}, not {name!r}")
    return ref


ModelRef = Annotated[str, AfterValidator(_check_model_ref)]
