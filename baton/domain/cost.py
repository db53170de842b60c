"""What one task or one tool run cost, as the credits ledger charged it: the actions of its
tool runs and the vendor credits of its model calls (and of its tools' `llm` steps). Shown on
a task's and a tool run's read; lists leave it out."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelCallCost(BaseModel):
    task_id: str = Field(description="The task that made the call (a node or delegated task)")
    seq: int = Field(description="The answer's place in that task's transcript")
    model: str | None = Field(description="null for calls recorded before the model was kept")
    input_tokens: int
    cached_input_tokens: int = Field(description="Of input_tokens, those read from cache")
    output_tokens: int
    vendor_credits: float = Field(description="0 on a project's own key or an unpriced model")


class ToolRunCharge(BaseModel):
    run_id: str
    tool_id: str
    actions: int
    vendor_credits: float = Field(description="What the run's `llm` steps spent")


class ToolRunCost(BaseModel):
    actions: int
    vendor_credits: float


class TaskCost(ToolRunCost):
    """A workforce task's or a delegating task's cost includes the tasks it started."""

    model_calls: list[ModelCallCost]
    tool_runs: list[ToolRunCharge]
