"""Advanced knowledge search: a model rewrites the question into a search query before the
search, and a model checks whether the hits answer the question and summarises them, citing
row ids. The API's `POST .../sets/{id}/search/advanced` and the "Advanced knowledge search"
tool template share the prompts and answer schemas here, so both ask a model the same thing.

Both model calls get a user message that is a JSON object: `{"question"}` for the rewrite,
`{"question", "hits": [{"row_id", "row"}]}` for the answer. The offline `scripted:search`
model (baton/integrations/llm/scripted.py) reads exactly these, so the whole path runs
without a provider."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, model_validator

from baton.domain.knowledge import SearchHit, SearchRequest
from baton.domain.llm import TokenUsage
from baton.domain.models import ModelRef
from baton.domain.tools import IDENTIFIER

REWRITE_SYSTEM_PROMPT = (
    "You turn a user's question into a query for a search engine over a table of rows. "
    "The user message is a JSON object with the question. Keep the words that name what is "
    "asked about, drop filler, add an obvious synonym when it helps. Answer with the JSON "
    'object {"query": "<the search query>"} only.'
)
ANSWER_SYSTEM_PROMPT = (
    "You check whether search hits answer a question. The user message is a JSON object with "
    "the question and the hits, each with its row_id and row. Use only the hits. Answer with "
    'the JSON object {"answered": <true if the hits answer the question>, "summary": "<the '
    'answer, or what is missing>", "citations": [<the row_id of every hit you used>]} only.'
)
REWRITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
    "additionalProperties": False,
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answered": {"type": "boolean"},
        "summary": {"type": "string"},
        "citations": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["answered", "summary", "citations"],
    "additionalProperties": False,
}
# What of a hit's row the answer's prompt shows, as JSON text: a row past it is cut, so a
# search of 20 hits stays a prompt of bounded size.
MAX_ROW_CHARS = 2_000
# Advanced search asks a model to read every hit: fewer than a plain search may return.
MAX_ADVANCED_TOP_K = 20
# The rewritten query is searched as any query is (SearchRequest.query).
MAX_QUERY_CHARS = 10_000


class AdvancedSearchRequest(SearchRequest):
    """A search (its query, mode, top_k and filters) with model steps around it."""

    top_k: int = Field(default=5, ge=1, le=MAX_ADVANCED_TOP_K)
    model: ModelRef = Field(
        description="The model of both steps, `provider:name`; `scripted:search` is the "
        "offline one (for demos and tests: it follows a fixed script, not judgement)"
    )
    integration: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="The project integration that holds the key; by default the project's "
        "integration for the model's provider, else the server's key",
    )
    rewrite: bool = Field(default=True, description="Rewrite the query before searching")
    answer: bool = Field(
        default=True, description="Check the hits answer the query and summarise them"
    )

    @model_validator(mode="after")
    def _a_model_step(self) -> AdvancedSearchRequest:
        if not (self.rewrite or self.answer):
            raise ValueError(
                "ask for rewrite, answer or both; a search without model steps is "
                "POST .../sets/{id}/search"
            )
        return self


class RewriteOutput(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)


class AnswerOutput(BaseModel):
    """The answer as the model gave it, before its citations are checked."""

    answered: bool
    summary: str
    citations: list[int] = []


class CheckedAnswer(BaseModel):
    answered: bool = Field(
        description="The model said the hits answer the question and cited at least one hit"
    )
    summary: str
    citations: list[int] = Field(description="The row ids cited that are among the hits")
    dropped_citations: list[int] = Field(
        description="Row ids the model cited that are not among the hits: left out, not trusted"
    )


class AdvancedSearchResult(BaseModel):
    query: str = Field(description="The question as asked")
    search_query: str = Field(description="What was searched: the rewrite, or the question")
    rewritten: bool
    hits: list[SearchHit]
    answer: CheckedAnswer | None = Field(description="null when `answer` was false")
    model: str
    offline_model: bool = Field(
        description="True for the scripted offline model: its rewrite and answer follow a "
        "fixed script, for demos and tests"
    )
    usage: TokenUsage = Field(description="Tokens of the model calls together")


def rewrite_message(question: str) -> str:
    return json.dumps({"question": question}, ensure_ascii=False)


def answer_message(question: str, hits: list[SearchHit]) -> str:
    shown = [{"row_id": hit.row_id, "row": _bounded(hit.row)} for hit in hits]
    return json.dumps({"question": question, "hits": shown}, ensure_ascii=False)


def checked(answer: AnswerOutput, hits: list[SearchHit]) -> CheckedAnswer:
    """Citations kept only where they name a hit; an answer that cites no hit is not taken
    as answering, whatever the model said."""
    ids = {hit.row_id for hit in hits}
    kept = list(dict.fromkeys(c for c in answer.citations if c in ids))
    dropped = list(dict.fromkeys(c for c in answer.citations if c not in ids))
    return CheckedAnswer(
        answered=answer.answered and bool(kept),
        summary=answer.summary,
        citations=kept,
        dropped_citations=dropped,
    )


def advanced_search_key(search_id: str, step: str) -> str:
    """The idempotency key of one model call's vendor credits: `step` of one search."""
    return f"knowledge-search:{search_id}:{step}"


def _bounded(row: dict[str, Any]) -> dict[str, Any] | str:
    text = json.dumps(row, ensure_ascii=False)
    return row if len(text) <= MAX_ROW_CHARS else text[:MAX_ROW_CHARS]
