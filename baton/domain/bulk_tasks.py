"""Bulk tasks: one agent task per row of a knowledge set, started at a pace, within hours.

A run's rows are chosen when it is created (the set's rows that match its filters) and each
gets one task, whose id is derived from the run's and the row's (`bulk_task_id`): a batch
retried after a crash starts the same task again, which `start_agent_task` answers with the
task already started, so a row's task starts at most once."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import meta
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from baton import templating
from baton.domain.knowledge import KnowledgeColumn, RowFilter
from baton.errors import InvalidInput

# A workflow's history stays short: it continues as new after this many batches.
BATCHES_PER_RUN = 100
MAX_TEMPLATE_CHARS = 20_000
# Namespace of the task ids of bulk runs' rows (uuid5 of the run id and the row id).
BULK_TASK_NAMESPACE = uuid.UUID("6b0f3a9e-5d1c-4f7e-9a51-0c2b7d3e8f41")


def bulk_task_id(bulk_id: str, row_id: int) -> str:
    """The id of the task a run starts for a row: the same on every attempt."""
    return str(uuid.uuid5(BULK_TASK_NAMESPACE, f"{bulk_id}:{row_id}"))


class BulkStatus(StrEnum):
    queued = "queued"
    running = "running"
    # Outside its working hours: the run sleeps until the next window opens.
    waiting = "waiting"
    # Every row's task has been started (or its start failed).
    completed = "completed"
    cancelled = "cancelled"
    failed = "failed"

    @property
    def is_final(self) -> bool:
        return self in (BulkStatus.completed, BulkStatus.cancelled, BulkStatus.failed)


class RowState(StrEnum):
    """What a run did with a row, as stored; what the API shows also reads the row's task."""

    upcoming = "upcoming"
    # Claimed by a batch, its task being started: a batch retried after a crash resumes it.
    starting = "starting"
    started = "started"
    failed = "failed"
    cancelled = "cancelled"


class RowProgress(StrEnum):
    """What the API shows of a row: its state, and once started its task's."""

    upcoming = "upcoming"
    in_progress = "in_progress"
    processed = "processed"
    failed = "failed"
    cancelled = "cancelled"


class WorkingHours(BaseModel):
    """Days (ISO: 1 is Monday, 7 Sunday) and a daily window `from`-`to` in a time zone; a
    window whose `to` is before its `from` runs past midnight into the next day."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    timezone: str = "UTC"
    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], min_length=1)
    start: time = Field(alias="from")
    end: time = Field(alias="to")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(day < 1 or day > 7 for day in value):
            raise ValueError("days are 1 (Monday) to 7 (Sunday)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _a_window(self) -> WorkingHours:
        if self.start == self.end:
            raise ValueError("`from` and `to` must differ")
        return self

    def next_opening(self, now: datetime) -> datetime | None:
        """None when `now` is within the hours; else when they next open (aware, UTC-based
        like `now`)."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        # A window that opened yesterday may still be open (past midnight).
        for offset in range(-1, 9):
            day = local.date() + timedelta(days=offset)
            if day.isoweekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, tzinfo=zone)
            closes_on = day if self.end > self.start else day + timedelta(days=1)
            closes = datetime.combine(closes_on, self.end, tzinfo=zone)
            if opens <= local < closes:
                return None
            if opens > local:
                return opens.astimezone(now.tzinfo)
        raise AssertionError("a week always has an opening")  # days is never empty


class BulkTaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set_id: str = Field(max_length=36)
    message_template: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    filters: list[RowFilter] = Field(default_factory=list, max_length=50)
    per_interval: int = Field(default=10, ge=1, le=1000)
    interval_seconds: float = Field(default=60, ge=0.1, le=86_400)
    working_hours: WorkingHours | None = None


def check_message_template(template: str, columns: list[KnowledgeColumn]) -> None:
    """A 422 for a template that does not parse, reads anything but `row`, or reads a column
    the set lacks (`row.x`)."""
    try:
        tree = templating.parse(template)
        references = templating.references(template)
    except templating.TemplateError as exc:
        raise InvalidInput(
            f"message_template: {exc}",
            details=[{"field": "message_template", "message": str(exc)}],
        ) from exc
    others = sorted(meta.find_undeclared_variables(tree) - {"row"})
    if others:
        raise InvalidInput(
            f"message_template: only `row` can be read here, not {', '.join(others)}",
            details=[{"field": "message_template", "unknown_names": others}],
        )
    if not columns:
        return  # a set without declared columns: any key may be there
    known = {column.name for column in columns}
    unknown = sorted(references.of("row") - known)
    if unknown:
        raise InvalidInput(
            f"message_template: the set has no column {', '.join(map(repr, unknown))}",
            details=[{"field": "message_template", "unknown_columns": unknown}],
        )


def render_message(template: str, row: dict[str, Any]) -> str:
    return templating.render_text(template, {"row": row}, budget=templating.Budget())


# ---------------------------------------------------------------------------------------------
# Payloads of `BulkTaskWorkflow`: fields are added with defaults only.


class BulkPlan(BaseModel):
    bulk_id: str
    project_id: str
    agent_id: str
    per_interval: int = 10
    interval_seconds: float = 60
    working_hours: WorkingHours | None = None


class BulkProgress(BaseModel):
    started: int = 0
    failed: int = 0
    batches: int = 0


class BulkTaskInput(BaseModel):
    plan: BulkPlan
    progress: BulkProgress = Field(default_factory=BulkProgress)


class BulkBatch(BaseModel):
    bulk_id: str
    limit: int


class BulkBatchOutcome(BaseModel):
    started: int = 0
    failed: int = 0
    # Rows still to start after this batch.
    remaining: int = 0


class BulkStatusUpdate(BaseModel):
    bulk_id: str
    status: BulkStatus
    waiting_until: datetime | None = None
    error: str | None = None


_TASK_PROGRESS = {
    # An idle task has answered and waits for a message that may never come: its row's
    # work is done.
    "idle": RowProgress.processed,
    "completed": RowProgress.processed,
    "failed": RowProgress.failed,
    "timed-out": RowProgress.failed,
    "cancelled": RowProgress.cancelled,
}


def row_progress(state: RowState, task_status: str | None) -> RowProgress:
    """What the API shows of a row: once its task started, that task's status decides."""
    if state is RowState.started:
        return _TASK_PROGRESS.get(task_status or "", RowProgress.in_progress)
    return {
        RowState.upcoming: RowProgress.upcoming,
        RowState.starting: RowProgress.in_progress,
        RowState.failed: RowProgress.failed,
        RowState.cancelled: RowProgress.cancelled,
    }[state]
