"""Agents."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from api.schemas.updates import update_of
from baton.db.tables import Agent
from baton.domain.agents import AgentSpec


class AgentCreate(AgentSpec):
    pass


# Every field of the agent's definition may change; each change is a new version.
AGENT_NOT_UPDATABLE: frozenset[str] = frozenset()
if TYPE_CHECKING:
    AgentUpdate = BaseModel
else:
    AgentUpdate = update_of(
        AgentSpec,
        name="AgentUpdate",
        doc="The fields of the agent's definition to change; the others keep their value.",
        not_updatable=AGENT_NOT_UPDATABLE,
    )


class AgentPublic(AgentSpec):
    model_config = ConfigDict(extra="ignore")

    id: str
    project_id: str
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, agent: Agent) -> AgentPublic:
        return cls.model_validate(
            {
                **agent.spec,
                "id": agent.id,
                "project_id": agent.project_id,
                "version": agent.version,
                "created_at": agent.created_at,
                "updated_at": agent.updated_at,
            }
        )


class AgentVersionPublic(BaseModel):
    version: int
    created_at: datetime
    spec: AgentSpec
