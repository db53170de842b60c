"""What the API shows of a bulk run and its rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from api.schemas.paging import Page
from baton.domain.bulk_tasks import BulkStatus, RowProgress


class BulkCounts(BaseModel):
    """Rows not started yet; started and still working; whose task answered (an idle task
    counts: it has answered and waits for a message); failed (to start, or their task
    failed); cancelled (by a cancel of the run before they started, or their task was)."""

    upcoming: int
    in_progress: int
    processed: int
    failed: int
    cancelled: int

    @classmethod
    def of(cls, counts: dict[RowProgress, int]) -> BulkCounts:
        return cls(**{progress.value: count for progress, count in counts.items()})


class BulkRowPublic(BaseModel):
    row_id: int
    status: RowProgress
    task_id: str | None
    task_status: str | None
    error: str | None
    started_at: datetime | None


class BulkTaskPublic(BaseModel):
    id: str
    agent_id: str
    set_id: str
    status: BulkStatus
    # While `waiting`: when the next working-hours window opens.
    waiting_until: datetime | None
    total: int
    counts: BulkCounts
    message_template: str
    filters: list[dict[str, Any]]
    per_interval: int
    interval_seconds: float
    working_hours: dict[str, Any] | None
    error: str | None
    workflow_id: str
    temporal_ui_url: str | None
    created_at: datetime
    updated_at: datetime


class BulkTaskDetail(BulkTaskPublic):
    """A run with one page of its rows, in row order (`?limit=&cursor=`)."""

    rows: Page[BulkRowPublic]
