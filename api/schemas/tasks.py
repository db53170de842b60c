"""Tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from baton.domain.accounts import UserGroupEnvironment
from baton.domain.cost import TaskCost
from baton.domain.tasks import Message, PendingApproval, TaskStatus
from baton.domain.workforce_tasks import AGENT_TASK_KIND, NodeRun


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


class WorkforceTaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=100_000)
    user_group: str | None = Field(
        default=None, description="The provided_id of the user group the task runs for"
    )
    user_group_environment: UserGroupEnvironment = UserGroupEnvironment.customer
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Read by tool nodes as {{ params.<name> }}; each agent node gets those "
        "its agent declares",
    )


class WorkforceMessagePublic(BaseModel):
    """A message of a workforce task: `author` is the node whose agent wrote it (none for
    the user's); a handover has `from` and `to`, and its content is what was handed over; a
    delegation has `from` (the node that asked), `to`, `task_id` (the task the asked node
    worked in), and its content is what was asked."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["message", "handover", "delegation"]
    role: str
    content: str
    author: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    task_id: str | None = None


class TaskKindFields(BaseModel):
    kind: str = Field(default=AGENT_TASK_KIND, description="agent-task or workforce-task")
    workforce_id: str | None = None
    parent_task_id: str | None = Field(
        default=None, description="A node's task: the workforce task it works for"
    )
    node: str | None = Field(default=None, description="A node's task: the node it runs")
    source: str | None = Field(
        default=None, description="Where it was started when not by the API: share:<id>"
    )


class TaskPublic(TaskCreated, TaskKindFields):
    agent_id: str | None = Field(description="The agent; none for a workforce task")
    workforce_version: int | None = None
    nodes: list[NodeRun] = Field(
        default_factory=list, description="A workforce task: each node run, in order"
    )
    agent_version: int | None = Field(description="The agent version the task runs")
    params: dict[str, Any] = Field(description="The agent's params as the task started")
    welcome_message: str = Field(description="The agent's welcome message, params filled in")
    error: str | None
    details: str | None = Field(
        default=None,
        description='What a task that has not started waits for: "waiting for capacity" '
        "while its organisation runs as many tasks as its plan's max_concurrent_tasks",
    )
    messages: list[Message | WorkforceMessagePublic]
    usage: Usage
    cost: TaskCost = Field(
        description="Actions and vendor credits the task (with its node and delegated tasks) "
        "was charged"
    )
    pending_approvals: list[PendingApproval]
    created_at: datetime
    updated_at: datetime


class TaskSummary(TaskCreated, TaskKindFields):
    agent_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
