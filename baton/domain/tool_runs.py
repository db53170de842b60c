"""Payloads of a tool run crossing the workflow/activity boundary. No secret values: steps
carry secret names, activities resolve them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from baton.domain.credits import LlmCharge
from baton.domain.tools import Step, StepStatus, ToolRunStatus, ToolSpec

# Outputs above this size are stored truncated in the step record (they still flow on).
RECORDED_OUTPUT_LIMIT = 64_000


def tool_run_workflow_id(run_id: str) -> str:
    return f"tool-run-{run_id}"


class StepRecord(BaseModel):
    position: int
    item: int = -1
    name: str
    type: str
    status: StepStatus
    output: Any = None
    error: str | None = None
    duration_ms: int = 0


class ToolRunInput(BaseModel):
    run_id: str
    project_id: str
    tool_id: str
    tool_version: int
    # The tool and every tool it calls, pinned when the run started.
    specs: dict[str, ToolSpec]
    params: dict[str, Any] = Field(default_factory=dict)
    # A child run (a `tool` step) keeps no row of its own: its parent records its output.
    persist: bool = True
    depth: int = 0
    # The texts of the snippets the tools read, pinned when the run started.
    snippets: dict[str, str] = Field(default_factory=dict)
    # The organisation plan's `tool_run_seconds` when the run started; None: no limit (as for
    # runs started before plans had one).
    time_limit_seconds: int | None = None


class NewToolRun(BaseModel):
    """The row of a run a workflow starts itself (an agent's tool call), written before the
    run starts so the API can read it like any other."""

    run_id: str
    project_id: str
    tool_id: str
    tool_version: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class ToolRunResult(BaseModel):
    status: ToolRunStatus
    output: Any = None
    error: str | None = None
    failed_step: str | None = None


class StepCall(BaseModel):
    run_id: str
    project_id: str
    position: int
    item: int = -1
    step: Step
    context: dict[str, Any]
    persist: bool = True
    # Whether the step's templates read `secrets`: only then are they decrypted.
    needs_secrets: bool = False


class StepOutcome(BaseModel):
    output: Any = None
    # A persisted run's `llm` step answers to charge, which the run's last write charges.
    charges: list[LlmCharge] = Field(default_factory=list)


class ToolRunProgress(BaseModel):
    """What a running run has done so far (the `progress` query); written to the database
    once, when the run ends, so each step costs no extra round trip."""

    status: ToolRunStatus
    current_step: str = ""
    records: list[StepRecord] = Field(default_factory=list)


class ToolRunFinish(BaseModel):
    run_id: str
    status: ToolRunStatus
    output: Any = None
    error: str | None = None
    records: list[StepRecord] = Field(default_factory=list)
    # What the run's `llm` steps answered, charged with this write (once per key).
    project_id: str | None = None
    charges: list[LlmCharge] = Field(default_factory=list)
