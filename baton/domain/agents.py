"""What an agent is: the definition a task runs with."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from baton.domain.models import ModelRef


class AgentSpec(BaseModel):
    """The part of an agent a task pins when it starts. Holds no secret, so it may travel in
    workflow history."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(default="", max_length=100_000)
    model: ModelRef = "scripted:echo"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
