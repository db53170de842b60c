"""A workforce task: the payloads of `WorkforceWorkflow` and of its activities.

A workforce task is a row of `tasks` (kind `workforce-task`) whose conversation is the
user's messages, each agent node's answer (an assistant message whose `author` is the node)
and the handovers between them. A handover is stored as a message of role `handover`: its
`author` is the node the work comes from, its `name` the node it goes to, its content what
was handed over; the API shows it as `{"type": "handover", "from", "to", "content"}`. A
delegation made while a node worked (by its agent, or by an agent it delegated to) is a
message of role `delegation`, written before the node's answer: `author` the node that
asked, `name` the node asked, its content what was asked, `tool_call_id` the task the asked
node worked in; the API shows it as `{"type": "delegation", "from", "to", "content",
"task_id"}`.

Each node run is announced in the task's events (`node.started`, then `node.completed` or
`node.failed`), numbered by the task's count of node runs; the API lists them as `nodes`.

Pure models, no I/O: the workflow builds them inside Temporal's sandbox. Fields are only
ever added, with defaults."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from baton.domain.agents import AgentSpec
from baton.domain.events import EventDraft
from baton.domain.tasks import TaskStatus, TaskStatusUpdate
from baton.domain.tool_checks import validate_params
from baton.domain.tool_runs import NewToolRun
from baton.domain.tools import ToolSpec
from baton.domain.workforces import WorkforceSpec

WORKFORCE_TASK_KIND = "workforce-task"
AGENT_TASK_KIND = "agent-task"
HANDOVER_ROLE = "handover"
DELEGATION_ROLE = "delegation"
# How much of a node's output its `node.completed` event (and the API's `nodes`) shows.
NODE_OUTPUT_PREVIEW = 2000


def workforce_task_workflow_id(task_id: str) -> str:
    return f"workforce-task-{task_id}"


def agent_task_workflow_id(task_id: str) -> str:
    """The id of an agent task's workflow (a node run is one), as the API starts them."""
    return f"task-{task_id}"


def agent_node_params(spec: AgentSpec, params: dict[str, Any]) -> dict[str, Any]:
    """What a node's agent (or a delegation's) starts with from the params of the task that
    started it: those it declares, checked, with its defaults (InvalidInput naming the param
    otherwise)."""
    declared = {param.name for param in spec.params}
    return validate_params(spec, {k: v for k, v in params.items() if k in declared})


def as_text(value: Any) -> str:
    """A node's output as the next agent reads it."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def parsed(value: Any) -> Any:
    """An output as rules and templates read it: JSON text parsed, anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class AgentNodeSetup(BaseModel):
    """An agent node as the task pinned it when it began."""

    agent_name: str
    params: dict[str, Any] = Field(default_factory=dict)


class WorkforceTaskInput(BaseModel):
    # Empty, with no `workforce`: a scheduled start, whose task the workflow names and
    # whose workforce (its current version) it loads as the task begins.
    task_id: str
    project_id: str
    workforce_id: str
    workforce_version: int
    workforce: WorkforceSpec | None
    message: str
    params: dict[str, Any] = Field(default_factory=dict)
    user_group_id: str | None = None
    # Carried over by continue-as-new (`message_count` > 0 means the task began before).
    message_count: int = 0
    node_runs: int = 0
    inbox: list[str] = Field(default_factory=list)
    answer: str = ""
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    tool_versions: dict[str, int] = Field(default_factory=dict)
    snippets: dict[str, str] = Field(default_factory=dict)
    agents: dict[str, AgentNodeSetup] = Field(default_factory=dict)


class WorkforceTaskResult(BaseModel):
    status: TaskStatus
    answer: str | None = None
    error: str | None = None
    node_runs: int = 0


class WorkforceTaskState(BaseModel):
    status: TaskStatus
    # The node at work, or None between nodes.
    node: str | None = None
    node_runs: int = 0
    queued_messages: int = 0


class BeginWorkforceTask(BaseModel):
    task_id: str
    workflow_id: str
    project_id: str
    workforce_id: str
    workforce_version: int
    # None: load the workforce's current version (a scheduled start).
    workforce: WorkforceSpec | None
    message: str
    params: dict[str, Any] = Field(default_factory=dict)
    user_group_id: str | None = None


class BegunWorkforceTask(BaseModel):
    """What the task pins as it begins: the tools of its tool nodes (with every tool they
    call) and their snippets, each agent node's agent name and params, and the workforce
    when it was loaded."""

    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    tool_versions: dict[str, int] = Field(default_factory=dict)
    snippets: dict[str, str] = Field(default_factory=dict)
    agents: dict[str, AgentNodeSetup] = Field(default_factory=dict)
    workforce: WorkforceSpec | None = None
    workforce_version: int | None = None


class WorkforceMessage(BaseModel):
    """Message `seq` of a workforce task: `role` user, assistant, handover or delegation;
    `author` the node that wrote it (a handover or delegation: the node it comes from), `to`
    where a handover or delegation goes, `task_id` the task a delegation ran in."""

    seq: int
    role: str
    content: str
    author: str | None = None
    to: str | None = None
    task_id: str | None = None


class WorkforceRecord(BaseModel):
    """The workflow's writes to its task, in one local activity: new tool runs, events,
    messages, then the status. Each write is idempotent (keys, seq), so a retry repeats
    nothing."""

    task_id: str
    tool_runs: list[NewToolRun] = Field(default_factory=list)
    events: list[EventDraft] = Field(default_factory=list)
    messages: list[WorkforceMessage] = Field(default_factory=list)
    status: TaskStatusUpdate | None = None


class NodeRunStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"


class NodeRun(BaseModel):
    """One run of a node, as the API lists it: `task_id` is an agent node's task,
    `run_id` a tool node's run, `branch` where a condition sent the work."""

    run: int
    node: str
    type: str
    status: NodeRunStatus
    task_id: str | None = None
    run_id: str | None = None
    branch: str | None = None
    output: str | None = None
    error: str | None = None
