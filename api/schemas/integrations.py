"""Integrations. The key is write-only: no response model has a field that could hold it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from baton.db.repositories.integrations import spec_of
from baton.db.tables import Integration
from baton.domain.integrations import IntegrationKind, IntegrationSpec
from baton.domain.tools import IDENTIFIER


class IntegrationCreate(IntegrationSpec):
    api_key: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Stored encrypted and never returned; a local server may need none",
    )


class IntegrationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=IDENTIFIER)
    kind: IntegrationKind | None = None
    base_url: HttpUrl | None = None
    default: bool | None = None
    api_key: SecretStr | None = Field(
        default=None, min_length=1, max_length=10_000, description="Replaces the stored key"
    )


class IntegrationPublic(IntegrationSpec):
    id: str
    project_id: str
    has_key: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration) -> IntegrationPublic:
        return cls(
            **spec_of(row).model_dump(),
            id=row.id,
            project_id=row.project_id,
            has_key=row.key_ciphertext is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
