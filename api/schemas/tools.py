"""Tools, tool runs and project secrets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from baton.db.tables import Tool, ToolRun, ToolRunStep
from baton.domain.cost import ToolRunCost
from baton.domain.tool_runs import StepRecord
from baton.domain.tools import StepStatus, ToolRunStatus, ToolSpec, parameters_json_schema


class ToolPublic(ToolSpec):
    model_config = ConfigDict(extra="ignore")

    id: str
    project_id: str
    version: int
    parameters_schema: dict[str, Any] = Field(description="What an LLM sees when calling it")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, tool: Tool, spec: ToolSpec) -> ToolPublic:
        return cls.model_validate(
            {
                **spec.model_dump(by_alias=True),
                "id": tool.id,
                "project_id": tool.project_id,
                "version": tool.version,
                "parameters_schema": parameters_json_schema(spec),
                "created_at": tool.created_at,
                "updated_at": tool.updated_at,
            }
        )


class ToolVersionPublic(BaseModel):
    version: int
    created_at: datetime
    spec: ToolSpec


class ToolRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)
    wait: bool = Field(default=False, description="Answer with the result if it comes in time")
    wait_seconds: float = Field(default=30.0, gt=0, le=300)


class StepResultPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    position: int
    item: int = Field(description="The foreach index, or -1")
    name: str
    type: str
    status: StepStatus
    output: Any
    error: str | None
    duration_ms: int


class ToolRunPublic(BaseModel):
    id: str
    tool_id: str
    tool_version: int
    workflow_id: str
    status: ToolRunStatus
    params: dict[str, Any]
    output: Any
    error: str | None
    temporal_ui_url: str
    steps: list[StepResultPublic]
    source: str | None = Field(
        default=None, description="Where it was started when not by the API: share:<id>"
    )
    cost: ToolRunCost | None = Field(
        default=None, description="What the run was charged; on a run's read, not in lists"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(
        cls,
        run: ToolRun,
        steps: Sequence[ToolRunStep | StepRecord],
        ui_url: str,
        status: ToolRunStatus | None = None,
        cost: ToolRunCost | None = None,
    ) -> ToolRunPublic:
        return cls(
            id=run.id,
            tool_id=run.tool_id,
            tool_version=run.tool_version,
            workflow_id=run.workflow_id,
            status=status or ToolRunStatus(run.status),
            params=run.params,
            output=run.output,
            error=run.error,
            temporal_ui_url=ui_url,
            steps=[StepResultPublic.model_validate(s, from_attributes=True) for s in steps],
            source=run.source,
            cost=cost,
            created_at=run.created_at,
            updated_at=run.updated_at,
        )


class SecretPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=20_000)


class SecretPublic(BaseModel):
    """A secret's name and dates; its value is never returned."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: datetime
    updated_at: datetime


class ToolTemplatePublic(BaseModel):
    id: str
    title: str
    description: str
    spec: ToolSpec
