"""Agents."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from baton.db.tables import Agent
from baton.domain.agents import AgentSpec, AgentTool
from baton.domain.models import ModelRef
from baton.domain.tools import ToolParam


class AgentCreate(AgentSpec):
    pass


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    model: ModelRef | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    # Checked in full when merged into the agent's definition.
    max_output_tokens: int | None = None
    tools: list[AgentTool] | None = None
    max_iterations: int | None = None
    autonomy_limit: int | None = None
    time_budget_seconds: float | None = None
    idle_timeout_seconds: float | None = None
    welcome_message: str | None = None
    integration: str | None = None
    params: list[ToolParam] | None = None


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
