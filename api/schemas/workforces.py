"""Workforces."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from api.schemas.updates import update_of
from baton.db.tables import Workforce
from baton.domain.workforces import WorkforceSpec


class WorkforceCreate(WorkforceSpec):
    pass


# Every field of the definition may change; each change is a new version.
WORKFORCE_NOT_UPDATABLE: frozenset[str] = frozenset()
if TYPE_CHECKING:
    WorkforceUpdate = BaseModel
else:
    WorkforceUpdate = update_of(
        WorkforceSpec,
        name="WorkforceUpdate",
        doc="The fields of the workforce's definition to change; the others keep their value "
        "(a list, such as nodes or edges, is replaced whole).",
        not_updatable=WORKFORCE_NOT_UPDATABLE,
    )


class WorkforcePublic(WorkforceSpec):
    model_config = ConfigDict(extra="ignore")

    id: str
    project_id: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, workforce: Workforce) -> WorkforcePublic:
        return cls.model_validate(
            {
                **workforce.spec,
                "id": workforce.id,
                "project_id": workforce.project_id,
                "version": workforce.version,
                "created_at": workforce.created_at,
                "updated_at": workforce.updated_at,
            }
        )


class WorkforceVersionPublic(BaseModel):
    version: int
    created_at: datetime
    spec: WorkforceSpec
