"""Integrations. The key is write-only: no response model has a field that could hold it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.schemas.updates import update_of
from baton.db.repositories.integrations import spec_of
from baton.db.tables import Integration
from baton.domain.integrations import IntegrationSpec


class IntegrationCreate(IntegrationSpec):
    api_key: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Stored encrypted and never returned; a local server may need none",
    )


class IntegrationKeyUpdate(BaseModel):
    """The part of an integration's update that is not in its spec: the key."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(
        default=None, min_length=1, max_length=10_000, description="Replaces the stored key"
    )


INTEGRATION_NOT_UPDATABLE: frozenset[str] = frozenset()
if TYPE_CHECKING:
    IntegrationUpdate = IntegrationKeyUpdate
else:
    IntegrationUpdate = update_of(
        IntegrationSpec,
        name="IntegrationUpdate",
        doc="The fields to change; a new base_url or kind needs the key again.",
        not_updatable=INTEGRATION_NOT_UPDATABLE,
        base=IntegrationKeyUpdate,
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
