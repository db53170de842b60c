"""Tasks: statuses, messages, and the payloads that cross the workflow/activity boundary."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from baton.domain.agents import AgentSpec

# The LLM vocabulary lives in baton.domain.llm; these names stay importable from here.
from baton.domain.llm import LlmRequest as LlmRequest
from baton.domain.llm import LlmResponse as LlmResponse
from baton.domain.llm import Message as Message
from baton.domain.llm import MessageRole as MessageRole
from baton.domain.llm import TokenUsage as TokenUsage


class TaskStatus(StrEnum):
    queued = "queued"
    running = "running"
    waiting_approval = "waiting-approval"
    idle = "idle"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed-out"
    out_of_credits = "out-of-credits"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {
        TaskStatus.completed,
        TaskStatus.failed,
        TaskStatus.cancelled,
        TaskStatus.timed_out,
        TaskStatus.out_of_credits,
    }
)


class AgentTaskInput(BaseModel):
    task_id: str
    project_id: str
    agent_id: str
    agent: AgentSpec
    message: str
    user_group_id: str | None = None


class AgentTaskResult(BaseModel):
    status: TaskStatus
    answer: str | None = None
    error: str | None = None


class TaskStatusUpdate(BaseModel):
    task_id: str
    status: TaskStatus
    error: str | None = None


class TaskMessageAppend(BaseModel):
    """`seq` is the message's place in the transcript, chosen by the workflow, so an activity
    retried after a crash writes the same row again instead of a second one."""

    task_id: str
    seq: int
    message: Message
