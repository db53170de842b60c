"""The audit log as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from baton.domain.audit import ActorKind


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: str | None
    actor_kind: ActorKind
    actor_id: str | None
    action: str
    target_type: str
    target_id: str
    client: str | None
    detail: dict[str, Any]
    created_at: datetime
