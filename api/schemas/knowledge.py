"""Knowledge sets, rows, imports and jobs as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.schemas.updates import update_of
from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeRow, KnowledgeSet
from baton.domain.knowledge import KnowledgeSetSpec

KNOWLEDGE_SET_NOT_UPDATABLE: frozenset[str] = frozenset()
if TYPE_CHECKING:
    KnowledgeSetUpdate = BaseModel
else:
    KnowledgeSetUpdate = update_of(
        KnowledgeSetSpec,
        name="KnowledgeSetUpdate",
        doc="Only the fields sent change. Columns may be added to or described differently "
        "once the set has rows, never removed or retyped.",
        not_updatable=KNOWLEDGE_SET_NOT_UPDATABLE,
    )


class KnowledgeSetPublic(KnowledgeSetSpec):
    model_config = ConfigDict(extra="ignore")

    id: str
    project_id: str
    row_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, knowledge_set: KnowledgeSet) -> KnowledgeSetPublic:
        return cls.model_validate(
            {
                **spec_of(knowledge_set).model_dump(),
                "id": knowledge_set.id,
                "project_id": knowledge_set.project_id,
                "row_count": knowledge_set.row_count,
                "created_at": knowledge_set.created_at,
                "updated_at": knowledge_set.updated_at,
            }
        )


class RowPublic(BaseModel):
    id: int
    data: dict[str, Any]
    embedded: bool = Field(description="Whether the row's current text has a vector")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: KnowledgeRow) -> RowPublic:
        return cls(
            id=row.id,
            data=row.data,
            embedded=row.embedding is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class ReembedQueued(BaseModel):
    status: str = "queued"
    rows: int = Field(description="Rows whose vector is computed again")


class RowsCreated(BaseModel):
    row_ids: list[int]


class _Chunking(BaseModel):
    chunk_size: int = Field(default=200, ge=1, le=10_000, description="Words per chunk")
    overlap: int = Field(default=20, ge=0, description="Words a chunk repeats from the last")

    @field_validator("overlap")
    @classmethod
    def _overlap_below_chunk_size(cls, overlap: int, info: ValidationInfo) -> int:
        chunk_size = info.data.get("chunk_size")
        if chunk_size is not None and overlap >= chunk_size:
            raise ValueError(f"overlap must be less than chunk_size ({chunk_size})")
        return overlap


class TextImport(_Chunking):
    """Raw text cut into rows `{"text", "source", "chunk"}` of `chunk_size` words."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    source: str = Field(default="text", max_length=2000)


class UrlImport(_Chunking):
    """A web page's readable text (no scripts, styles or navigation), chunked like text;
    each row's `source` is the page's final URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    set_id: str
    kind: str
    status: str
    params: dict[str, Any]
    done: int
    failed: int
    total: int
    error: str | None
    created_at: datetime
    updated_at: datetime


class KnowledgeSourcePublic(BaseModel):
    """A synced source and how its last sync went: `rows_added`, `rows_changed` and
    `rows_removed` count that sync's changes (an unchanged source shows zeros)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    set_id: str
    kind: str
    url: str
    interval_minutes: int
    last_sync_at: datetime | None
    last_outcome: str | None = Field(description="running, succeeded or failed; null before any")
    last_workflow_id: str | None
    rows_added: int
    rows_changed: int
    rows_removed: int
    last_error: str | None = Field(description="Why the last sync failed; its old rows are kept")
    created_at: datetime
    updated_at: datetime


class SyncStarted(BaseModel):
    status: str = "started"
    workflow_id: str
