"""A project's usage report: per day, agent, tool, model or user group, the tokens its
tasks used, the vendor credits and actions the ledger charged, and how many tasks and tool
runs started and how many of them failed. The words, not the storage."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class GroupBy(StrEnum):
    day = "day"
    agent = "agent"
    tool = "tool"
    model = "model"
    user_group = "user_group"


class UsageRow(BaseModel):
    group: str | None = Field(
        description="The day (YYYY-MM-DD, UTC), or the agent's, tool's or user group's id, or "
        "the model; null for what has none (a tool run by agent, a task by tool...)"
    )
    input_tokens: int = 0
    cached_input_tokens: int = Field(
        0, description="Of input_tokens, those read from the provider's prompt cache"
    )
    output_tokens: int = 0
    vendor_credits: float = 0
    actions: int = 0
    runs: int = Field(0, description="Tasks and tool runs started")
    failures: int = Field(0, description="Of those, how many failed or timed out")


class UsageReport(BaseModel):
    project_id: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    group_by: GroupBy
    rows: list[UsageRow]
    totals: UsageRow
