"""Reranking a search: re-scoring its first-pass candidates, and returning the best of them by
the reranker's score. Its own module so both a search request and a tool's
`knowledge_search` step can carry the option, checked when either is saved."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RerankProvider(StrEnum):
    # A bi-encoder reranker on the shipped all-MiniLM-L6-v2: the query against each passage
    # of a candidate's text, not a cross-encoder (no package ships one's weights offline).
    local = "local"
    # A Cohere/Jina-style `POST {base_url}/rerank` through a project integration.
    integration = "integration"


# How many first-pass candidates a rerank re-scores, by default and at most.
DEFAULT_RERANK_CANDIDATES = 50
MAX_RERANK_CANDIDATES = 200


class RerankOptions(BaseModel):
    """Re-scoring a search's first-pass candidates. `true` stands for `{"provider": "local"}`."""

    model_config = ConfigDict(extra="forbid")

    provider: RerankProvider = Field(
        default=RerankProvider.local,
        description="local: a bi-encoder reranker on the local all-MiniLM-L6-v2 model (each "
        "candidate's passages against the query, blended with its first-pass rank); "
        "integration: a `POST /rerank` endpoint (Cohere, Jina, vLLM, llama.cpp, LiteLLM) "
        "reached through the project's OpenAI-compatible integration named by `integration`",
    )
    integration: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="integration: the integration's name or id; its base URL and key are used",
    )
    model: str | None = Field(
        default=None, min_length=1, max_length=200, description="integration: the rerank model"
    )
    candidates: int = Field(
        default=DEFAULT_RERANK_CANDIDATES,
        ge=1,
        le=MAX_RERANK_CANDIDATES,
        description="How many first-pass hits are re-scored (at least top_k are)",
    )

    @model_validator(mode="after")
    def _what_its_provider_needs(self) -> RerankOptions:
        if self.provider is RerankProvider.integration:
            if not self.integration or not self.model:
                raise ValueError("an integration reranker needs `integration` and `model`")
        elif self.integration is not None or self.model is not None:
            raise ValueError(
                "the local reranker takes no `integration` or `model`; set "
                '`"provider": "integration"` to use an endpoint'
            )
        return self


def rerank_option(value: Any) -> Any:
    """`true` is the local reranker, `false` none; anything else is checked as options."""
    if value is True:
        return {}
    if value is False:
        return None
    return value
