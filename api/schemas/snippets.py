from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SnippetPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=100_000)


class SnippetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    text: str
    created_at: datetime
    updated_at: datetime
