"""Enrichment jobs and the rows they write: created by the API, advanced by batch activities.

A job is read scoped by project and set, so another tenant's ids answer 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import KnowledgeJob, KnowledgeRow, KnowledgeSet, utcnow
from baton.domain.enrichment import EnrichmentCreate, enrichment_workflow_id
from baton.domain.knowledge import JobKind, JobStatus, KnowledgeColumn, row_content
from baton.errors import NotFound

ACTIVE_STATUSES = (JobStatus.queued.value, JobStatus.running.value)


@dataclass(frozen=True)
class RowResult:
    """What one row's run gave: its new column values, or the error to record."""

    row_id: int
    values: dict[str, Any]
    failed: bool


async def set_columns(*, session: AsyncSession, set_id: str) -> list[KnowledgeColumn]:
    found = await session.get(KnowledgeSet, set_id)
    if found is None:
        raise NotFound(f"knowledge set {set_id} not found")
    return [KnowledgeColumn.model_validate(column) for column in found.columns]


async def row_span(*, session: AsyncSession, set_id: str) -> tuple[int, int]:
    """(row count, highest row id) of the set now: a job covers exactly these rows."""
    count, highest = (
        await session.execute(
            select(func.count(KnowledgeRow.id), func.max(KnowledgeRow.id)).where(
                KnowledgeRow.set_id == set_id
            )
        )
    ).one()
    return int(count), int(highest or 0)


async def active_job(*, session: AsyncSession, set_id: str) -> KnowledgeJob | None:
    query = select(KnowledgeJob).where(
        KnowledgeJob.set_id == set_id,
        KnowledgeJob.kind == JobKind.enrich.value,
        KnowledgeJob.status.in_(ACTIVE_STATUSES),
    )
    return (await session.scalars(query.limit(1))).first()


async def create_job(
    *,
    session: AsyncSession,
    job_id: str,
    project_id: str,
    set_id: str,
    request: EnrichmentCreate,
    total: int,
) -> KnowledgeJob:
    job = KnowledgeJob(
        id=job_id,
        project_id=project_id,
        set_id=set_id,
        kind=JobKind.enrich.value,
        status=JobStatus.queued.value,
        workflow_id=enrichment_workflow_id(job_id),
        params={
            **request.model_dump(mode="json", exclude_none=True),
            "error_column": request.resolved_error_column,
        },
        total=total,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(
    *, session: AsyncSession, project_id: str, set_id: str, job_id: str
) -> KnowledgeJob:
    job = await session.get(KnowledgeJob, job_id)
    if (
        job is None
        or job.project_id != project_id
        or job.set_id != set_id
        or job.kind != JobKind.enrich.value
    ):
        raise NotFound(f"enrichment job {job_id} not found")
    return job


async def list_jobs(
    *, session: AsyncSession, project_id: str, set_id: str, page: PageRequest = ALL
) -> Paged[KnowledgeJob]:
    """Newest first."""
    query = select(KnowledgeJob).where(
        KnowledgeJob.project_id == project_id,
        KnowledgeJob.set_id == set_id,
        KnowledgeJob.kind == JobKind.enrich.value,
    )
    order = (Key(KnowledgeJob.created_at, descending=True), KnowledgeJob.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def read_batch(
    *, session: AsyncSession, set_id: str, after_row_id: int, last_row_id: int, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    query = (
        select(KnowledgeRow.id, KnowledgeRow.data)
        .where(
            KnowledgeRow.set_id == set_id,
            KnowledgeRow.id > after_row_id,
            KnowledgeRow.id <= last_row_id,
        )
        .order_by(KnowledgeRow.id)
        .limit(limit)
    )
    return [(row_id, data) for row_id, data in (await session.execute(query)).all()]


async def write_results(
    *,
    session: AsyncSession,
    set_id: str,
    columns: list[KnowledgeColumn],
    results: list[RowResult],
) -> None:
    """Merges each result into its row as it is now (a concurrent edit of another column is
    kept) and recomputes the row's search text; a changed text drops its stale vector."""
    if not results:
        return
    current = await session.execute(
        select(KnowledgeRow.id, KnowledgeRow.data, KnowledgeRow.content).where(
            KnowledgeRow.set_id == set_id,
            KnowledgeRow.id.in_([result.row_id for result in results]),
        )
    )
    rows = {row_id: (data, content) for row_id, data, content in current.all()}
    now = utcnow()
    changes: list[dict[str, Any]] = []
    for result in results:
        if result.row_id not in rows:
            continue  # deleted meanwhile
        data, content = rows[result.row_id]
        # As a row update does: a null value removes the column.
        merged = {
            key: value for key, value in {**data, **result.values}.items() if value is not None
        }
        change: dict[str, Any] = {"id": result.row_id, "data": merged, "updated_at": now}
        new_content = row_content(columns, merged)
        if new_content != content:
            change.update(content=new_content, embedding=None)
        changes.append(change)
    if changes:
        await session.execute(update(KnowledgeRow), changes)


async def set_progress(
    *, session: AsyncSession, job_id: str, done: int, failed: int, status: JobStatus | None = None
) -> None:
    values: dict[str, Any] = {"done": done, "failed": failed, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status.value
    await session.execute(update(KnowledgeJob).where(KnowledgeJob.id == job_id).values(**values))


async def finish_job(
    *,
    session: AsyncSession,
    job_id: str,
    status: JobStatus,
    done: int | None,
    failed: int | None,
    error: str | None,
) -> None:
    values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": utcnow()}
    if done is not None and failed is not None:
        values.update(done=done, failed=failed)
    await session.execute(update(KnowledgeJob).where(KnowledgeJob.id == job_id).values(**values))
