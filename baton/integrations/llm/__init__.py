"""LLM provider adapters behind one `complete` call."""

from __future__ import annotations

from baton.domain.models import SCRIPTED_PROVIDER, split_model_ref
from baton.domain.tasks import LlmRequest, LlmResponse
from baton.errors import ModelNotAvailable
from baton.integrations.llm import scripted


async def complete(request: LlmRequest) -> LlmResponse:
    provider, name = split_model_ref(request.model)
    if provider == SCRIPTED_PROVIDER:
        return scripted.complete(name, request)
    raise ModelNotAvailable(f"provider {provider!r} is not available in this version")
