"""Project-level integrations: how a project reaches an LLM provider with its own key.

The key is write-only: it is stored encrypted and read back only inside the activity that
calls the provider, so it is never part of an integration's public view or of history."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from baton.domain.models import ANTHROPIC_PROVIDER, OPENAI_PROVIDER
from baton.domain.tools import IDENTIFIER


class IntegrationKind(StrEnum):
    """Each kind is the provider of the model refs it serves (`openai:gpt-4o-mini`)."""

    # Any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM.
    openai = OPENAI_PROVIDER
    anthropic = ANTHROPIC_PROVIDER


class IntegrationConfig(BaseModel):
    """What is stored in clear beside the encrypted key."""

    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl | None = Field(
        default=None, description="The provider's endpoint; its public API when unset"
    )
    default: bool = Field(
        default=False,
        description="Used for models of its kind when an agent or step names no integration "
        "and the project has several of that kind",
    )


class IntegrationSpec(IntegrationConfig):
    name: str = Field(pattern=IDENTIFIER)
    kind: IntegrationKind
