"""A task's events: what the SSE stream sends, and what activities append to produce it.

Pure models (no I/O): workflows import them inside Temporal's sandbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from baton.domain.tool_runs import NewToolRun


class EventType(StrEnum):
    task_status = "task.status"
    message_delta = "message.delta"
    message_completed = "message.completed"
    tool_call_requested = "tool.call.requested"
    tool_approval_requested = "tool.approval.requested"
    tool_approval_decided = "tool.approval.decided"
    tool_run_started = "tool.run.started"
    tool_run_completed = "tool.run.completed"
    tool_run_failed = "tool.run.failed"
    task_error = "task.error"
    llm_retrying = "llm.retrying"
    usage = "usage"
    # A workforce task's node runs (baton/domain/workforce_tasks.py).
    node_started = "node.started"
    node_completed = "node.completed"
    node_failed = "node.failed"


class EventDraft(BaseModel):
    """An event before it has its place in the task's order. `key`, unique per task, makes
    appending it idempotent: an append retried after a crash finds the key and writes nothing."""

    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(default=None, max_length=200)


class AppendEvents(BaseModel):
    task_id: str
    events: list[EventDraft]
    # Rows of tool runs the task starts next, written with the events that announce them.
    tool_runs: list[NewToolRun] = Field(default_factory=list)


class TaskEventOut(BaseModel):
    """One event as the API sends it; `seq` counts from 1 per task and is the SSE `id`."""

    seq: int
    type: EventType
    data: dict[str, Any]
    created_at: datetime
