"""Tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from baton.domain.accounts import UserGroupEnvironment
from baton.domain.tasks import Message, PendingApproval, TaskStatus


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=100_000)
    user_group: str | None = Field(
        default=None, description="The provided_id of the user group the task runs for"
    )
    user_group_environment: UserGroupEnvironment = UserGroupEnvironment.customer
    params: dict[str, Any] = Field(
        default_factory=dict, description="Values of the agent's typed params"
    )


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=100_000)


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool
    arguments: dict[str, Any] | None = Field(
        default=None, description="Run the call with these arguments instead"
    )
    reason: str = Field(default="", max_length=2000, description="Told to the model")


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class TaskCreated(BaseModel):
    id: str
    workflow_id: str
    status: TaskStatus
    temporal_ui_url: str


class TaskPublic(TaskCreated):
    agent_id: str
    agent_version: int | None = Field(description="The agent version the task runs")
    params: dict[str, Any] = Field(description="The agent's params as the task started")
    welcome_message: str = Field(description="The agent's welcome message, params filled in")
    error: str | None
    messages: list[Message]
    usage: Usage
    pending_approvals: list[PendingApproval]
    created_at: datetime
    updated_at: datetime


class TaskSummary(TaskCreated):
    agent_id: str
    error: str | None
    created_at: datetime
    updated_at: datetime
