"""Tasks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from baton.domain.tasks import Message, TaskStatus


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=100_000)


class TaskCreated(BaseModel):
    id: str
    workflow_id: str
    status: TaskStatus
    temporal_ui_url: str


class TaskPublic(TaskCreated):
    agent_id: str
    error: str | None
    messages: list[Message]
    created_at: datetime
    updated_at: datetime


class TaskSummary(TaskCreated):
    agent_id: str
    error: str | None
    created_at: datetime
    updated_at: datetime
