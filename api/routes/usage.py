"""A project's usage report, as JSON or as CSV: what its tasks and tool runs used and what
the ledger charged, per day, agent, tool, model or user group. Any member of the project
reads it; a user group's token does not (it would see other groups' usage)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import ProjectDep, SessionDep, Viewer, get_project
from baton.db.repositories import usage as usage_repo
from baton.db.tables import utcnow
from baton.domain.usage import GroupBy, UsageReport, UsageRow
from baton.errors import InvalidInput

router = APIRouter(
    prefix="/api/v1/projects/{project_id}",
    tags=["usage"],
    dependencies=[Depends(get_project)],
)

DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)


@dataclass(frozen=True)
class UsageQuery:
    start: datetime
    end: datetime
    group_by: GroupBy


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details=[{"field": field, "message": message}])


def usage_query(
    from_: Annotated[
        datetime | None,
        Query(alias="from", description="From this time on (inclusive); 30 days before `to`"),
    ] = None,
    to: Annotated[datetime | None, Query(description="Before this time (exclusive); now")] = None,
    group_by: Annotated[GroupBy, Query(description="What each row is")] = GroupBy.day,
) -> UsageQuery:
    """Times need a time zone (`2026-12-01T00:00:00Z`); at most 366 days apart."""
    for field, moment in (("from", from_), ("to", to)):
        if moment is not None and moment.tzinfo is None:
            raise _bad(field, "needs a time zone, for example 2026-12-01T00:00:00Z")
    end = to or utcnow()
    start = from_ or end - DEFAULT_WINDOW
    if start >= end:
        raise _bad("from", "must be before to")
    if end - start > MAX_WINDOW:
        raise _bad("from", f"at most {MAX_WINDOW.days} days before to")
    return UsageQuery(start=start, end=end, group_by=group_by)


UsageQueryDep = Annotated[UsageQuery, Depends(usage_query)]


async def _report(project_id: str, session: SessionDep, query: UsageQuery) -> UsageReport:
    return await usage_repo.usage_report(
        session=session,
        project_id=project_id,
        start=query.start,
        end=query.end,
        group_by=query.group_by,
    )


@router.get("/usage")
async def get_usage(
    project: ProjectDep, session: SessionDep, _: Viewer, query: UsageQueryDep
) -> UsageReport:
    """Per group: the tokens of the tasks that started in the window (a task's whole total
    counts when it started), the vendor credits and actions charged in it, and the tasks and
    tool runs started in it and how many failed. `group` is null for what the grouping does
    not name: tool runs by agent, model or user group; tasks by tool."""
    return await _report(project.id, session, query)


@router.get("/usage.csv", response_class=Response)
async def get_usage_csv(
    project: ProjectDep, session: SessionDep, _: Viewer, query: UsageQueryDep
) -> Response:
    """The rows of `GET .../usage` (no totals), a header line first."""
    report = await _report(project.id, session, query)
    return Response(content=as_csv(report), media_type="text/csv")


def as_csv(report: UsageReport) -> str:
    out = io.StringIO()
    columns = [name for name in UsageRow.model_fields if name != "group"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.group_by.value, *columns])
    for row in report.rows:
        writer.writerow([row.group or "", *(getattr(row, name) for name in columns)])
    return out.getvalue()
