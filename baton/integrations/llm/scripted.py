"""The scripted model: offline and deterministic, for demos and tests only. Its answers are
labelled so nobody mistakes them for a real model's."""

from __future__ import annotations

from baton.domain.models import SCRIPTED_LABEL
from baton.domain.tasks import LlmRequest, LlmResponse, MessageRole, TokenUsage
from baton.errors import ModelNotAvailable


def complete(name: str, request: LlmRequest) -> LlmResponse:
    if name != "echo":
        raise ModelNotAvailable(f"the scripted provider has no model {name!r}")
    last_user = next(
        (m.content for m in reversed(request.messages) if m.role is MessageRole.user), ""
    )
    content = f"{SCRIPTED_LABEL} You said: {last_user}"
    return LlmResponse(
        content=content,
        model=request.model,
        usage=TokenUsage(
            input_tokens=sum(_count_tokens(m.content) for m in request.messages),
            output_tokens=_count_tokens(content),
        ),
    )


def _count_tokens(text: str) -> int:
    # Whitespace words: no tokenizer is needed to make usage figures plausible offline.
    return len(text.split())
