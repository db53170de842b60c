"""Knowledge: a project's tables of rows that agents search and tools read, write and enrich.

A set has typed columns; a row is a JSON object keyed by column name. A row's searchable text
(`content`) is its text columns joined; lexical search indexes it and, when the set has an
embedding provider, a vector of it is kept for nearest-neighbour search."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from baton.domain.rerank import RerankOptions, rerank_option
from baton.domain.tools import IDENTIFIER, ToolSpec

# How large an import may be is the organisation's plan's (baton/domain/credits.py,
# PlanBook.limits), under the installation's ceilings.
# Vectors are float32; the local model gives 384 dimensions.
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
LOCAL_EMBEDDING_DIMENSIONS = 384


class ColumnType(StrEnum):
    text = "text"
    number = "number"
    integer = "integer"
    boolean = "boolean"
    json = "json"


class KnowledgeColumn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER)
    type: ColumnType = ColumnType.text
    description: str = ""
    searchable: bool = Field(
        default=True, description="A text column whose value goes into the row's search text"
    )


class EmbeddingProvider(StrEnum):
    none = "none"
    local = "local"
    openai = "openai"


class EmbeddingConfig(BaseModel):
    """How a set's rows become vectors. `local` runs all-MiniLM-L6-v2 offline (the optional
    `local-embeddings` extra); `openai` calls any OpenAI-compatible embeddings endpoint, with
    the key and base URL of a project integration named by `integration`."""

    model_config = ConfigDict(extra="forbid")

    provider: EmbeddingProvider = EmbeddingProvider.none
    model: str | None = Field(default=None, description="Default: the provider's own")
    integration: str | None = Field(default=None, description="openai: the integration's name")

    @model_validator(mode="after")
    def _openai_needs_integration(self) -> EmbeddingConfig:
        if self.provider is EmbeddingProvider.openai and not self.integration:
            raise ValueError("the openai embedding provider needs an integration name")
        return self


class KnowledgeSetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    columns: list[KnowledgeColumn] = Field(default_factory=list, max_length=200)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)

    @model_validator(mode="after")
    def _unique_columns(self) -> KnowledgeSetSpec:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate column names: {', '.join(duplicates)}")
        return self

    def column(self, name: str) -> KnowledgeColumn | None:
        return next((c for c in self.columns if c.name == name), None)


class FilterOp(StrEnum):
    eq = "eq"
    ne = "ne"
    gt = "gt"
    gte = "gte"
    lt = "lt"
    lte = "lte"
    contains = "contains"
    exists = "exists"


class RowFilter(BaseModel):
    """One condition on a column. Values are always bound parameters, never SQL text."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(pattern=IDENTIFIER)
    op: FilterOp = FilterOp.eq
    value: Any = None


class SearchMode(StrEnum):
    lexical = "lexical"
    vector = "vector"
    hybrid = "hybrid"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000)
    mode: SearchMode | None = Field(
        default=None,
        description="hybrid, vector or lexical; by default hybrid, or lexical on a set "
        "without an embedding provider",
    )
    top_k: int = Field(default=5, ge=1, le=100)
    filters: list[RowFilter] = Field(default_factory=list)
    rerank: RerankOptions | None = Field(
        default=None,
        description="Re-score the first-pass candidates and return the best top_k of them "
        'by the reranker: `true` (local), `{"provider": "local", "candidates": 50}` or '
        '`{"provider": "integration", "integration": "...", "model": "..."}`',
    )

    _rerank_shorthand = field_validator("rerank", mode="before")(rerank_option)


class SearchHit(BaseModel):
    """What a search returns per row, so an agent can cite it."""

    row_id: int
    row: dict[str, Any]
    score: float = Field(description="The first pass's score (lexical, vector or fused)")
    rerank_score: float | None = Field(
        default=None, description="The reranker's score, by which a reranked search is ordered"
    )


class JobKind(StrEnum):
    import_ = "import"
    embed = "embed"
    enrich = "enrich"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# Rows per embedding activity: a few seconds of the local model on a CPU.
DEFAULT_EMBED_BATCH_SIZE = 256


def embed_workflow_id(set_id: str) -> str:
    """One embedding run per set at a time."""
    return f"knowledge-embed-{set_id}"


class EmbedSetInput(BaseModel):
    """The input of a set's embedding run (`EmbedSetWorkflow`)."""

    project_id: str
    set_id: str
    batch_size: int = DEFAULT_EMBED_BATCH_SIZE
    # Carried over continue-as-new: one job records the whole run.
    job_id: str | None = None


class EmbedProgress(BaseModel):
    """What an embedding run returns and its `progress` query answers."""

    job_id: str | None
    status: JobStatus
    done: int
    remaining: int


class AttachMode(StrEnum):
    """How an agent uses an attached set: a search tool, or rows placed in its prompt."""

    search = "search"
    prompt = "prompt"


class AgentKnowledge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set_id: str
    mode: AttachMode = AttachMode.search
    token_budget: int = Field(default=2000, ge=50, le=100_000)
    description: str = ""
    rerank: RerankOptions | None = Field(
        default=None, description="search mode: how the agent's searches are reranked"
    )

    _rerank_shorthand = field_validator("rerank", mode="before")(rerank_option)


def row_content(columns: list[KnowledgeColumn], data: dict[str, Any]) -> str:
    """A row's search text: its searchable text columns, or every string value when the set
    declares no columns."""
    if not columns:
        return "\n".join(str(v) for v in data.values() if isinstance(v, str) and v)
    parts = [
        str(data[c.name])
        for c in columns
        if c.type is ColumnType.text and c.searchable and data.get(c.name) not in (None, "")
    ]
    return "\n".join(parts)


KNOWLEDGE_TOOL_PREFIX = "knowledge:"
# A prompt-mode set's rows, in characters per token of budget (a rough, provider-free count).
CHARS_PER_TOKEN = 4


def knowledge_tool_id(set_id: str) -> str:
    return KNOWLEDGE_TOOL_PREFIX + set_id


def knowledge_search_tool(
    *,
    set_id: str,
    name: str,
    description: str,
    vector: bool,
    top_k: int = 5,
    rerank: RerankOptions | None = None,
) -> ToolSpec:
    """The tool an agent searches an attached set with: a one-step tool, so a search runs,
    streams and shows in the Temporal UI like any other tool call."""
    about = description or f"rows of the knowledge set {name!r}"
    return ToolSpec.model_validate(
        {
            "name": f"search {name}",
            "description": (
                f"Search {about}. Returns the best matching rows, each with its row_id: "
                "cite the row_id of what you use."
            ),
            "params": [{"name": "query", "description": "What to look for"}],
            "steps": [
                {
                    "name": "search",
                    "type": "knowledge_search",
                    "knowledge_set": set_id,
                    "query": "{{ params.query }}",
                    "mode": "hybrid" if vector else "lexical",
                    "top_k": top_k,
                    **(
                        {"rerank": rerank.model_dump(mode="json", exclude_defaults=True)}
                        if rerank is not None
                        else {}
                    ),
                }
            ],
        }
    )


def knowledge_prompt(
    name: str, rows: list[tuple[int, str]], token_budget: int, *, total: int
) -> str:
    """A prompt-mode set's rows (the first of `total`) for the system prompt, cut at the
    budget."""
    budget = token_budget * CHARS_PER_TOKEN
    lines: list[str] = []
    used = 0
    for row_id, content in rows:
        line = f"[row {row_id}] " + " ".join(content.split())
        if used + len(line) > budget:
            break
        lines.append(line)
        used += len(line) + 1
    left_out = max(total, len(rows)) - len(lines)
    if left_out:
        lines.append(f"({left_out} more rows left out: over the budget of {token_budget} tokens)")
    return f"Knowledge set {name!r} (cite row ids):\n" + "\n".join(lines)


# The embedding workflow's activity payloads.
class EmbedBatch(BaseModel):
    project_id: str
    set_id: str
    job_id: str
    batch_size: int = 256


class EmbedBatchResult(BaseModel):
    embedded: int
    remaining: int
    done: int


class EmbedJobEnd(BaseModel):
    job_id: str
    status: JobStatus
    error: str | None = None
    # To record a job that failed before its first batch wrote it.
    project_id: str | None = None
    set_id: str | None = None
