"""Knowledge jobs: long work on a set (an import, an embedding, an enrichment) and its progress.

Every write of `knowledge_jobs` is here. The API records an import as it runs; an embedding's
job is written by its batch activities (the first batch creates it); an enrichment's is created
by the API and advanced by its batch activities. A job is read scoped by project (and set for
an enrichment), so another tenant's ids answer 404."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import KnowledgeJob, KnowledgeSet, utcnow
from baton.domain.enrichment import EnrichmentCreate, enrichment_workflow_id
from baton.domain.knowledge import EmbedBatch, EmbedJobEnd, JobKind, JobStatus
from baton.errors import NotFound

ACTIVE_STATUSES = (JobStatus.queued.value, JobStatus.running.value)


async def create_job(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    kind: JobKind,
    params: dict[str, Any],
    status: JobStatus = JobStatus.running,
) -> KnowledgeJob:
    job = KnowledgeJob(
        project_id=knowledge_set.project_id,
        set_id=knowledge_set.id,
        kind=kind.value,
        status=status.value,
        params=params,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(*, session: AsyncSession, project_id: str, job_id: str) -> KnowledgeJob:
    job = await session.get(KnowledgeJob, job_id)
    if job is None or job.project_id != project_id:
        raise NotFound(f"knowledge job {job_id} not found")
    return job


async def list_jobs(
    *, session: AsyncSession, knowledge_set: KnowledgeSet, page: PageRequest = ALL
) -> Paged[KnowledgeJob]:
    """Newest first."""
    query = select(KnowledgeJob).where(KnowledgeJob.set_id == knowledge_set.id)
    order = (Key(KnowledgeJob.created_at, descending=True), KnowledgeJob.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def finish_job(
    *,
    session: AsyncSession,
    job_id: str,
    status: JobStatus,
    done: int = 0,
    failed: int = 0,
    error: str | None = None,
) -> KnowledgeJob:
    """Ends a job whose total is what it did (an import): `done + failed`."""
    job = await session.get(KnowledgeJob, job_id)
    if job is None:
        raise NotFound(f"knowledge job {job_id} not found")
    job.status = status.value
    job.done, job.failed, job.total = done, failed, done + failed
    job.error = error
    job.updated_at = utcnow()
    await session.flush()
    return job


# ---------------------------------------------------------------------------------------------
# Embedding


async def add_embedded(
    *,
    session: AsyncSession,
    batch: EmbedBatch,
    workflow_id: str | None,
    stored: int,
    remaining: int,
) -> int:
    """Adds a batch to the embed job (created by the first batch) and returns its done count;
    the total grows when rows arrive while the job runs."""
    job = await session.get(KnowledgeJob, batch.job_id)
    if job is None:
        job = _embed_job(batch.job_id, batch.project_id, batch.set_id, workflow_id)
        session.add(job)
    job.done += stored
    job.total = job.done + remaining
    job.status = JobStatus.running.value
    job.updated_at = utcnow()
    return job.done


async def finish_embed_job(
    *, session: AsyncSession, end: EmbedJobEnd, workflow_id: str | None
) -> None:
    """The embed job's final status; nothing to do when its set was deleted meanwhile. A job
    that failed before its first batch is recorded here, so its error shows."""
    job = await session.get(KnowledgeJob, end.job_id)
    if job is None:
        knowledge_set = await session.get(KnowledgeSet, end.set_id or "")
        if knowledge_set is None or knowledge_set.project_id != end.project_id:
            return
        job = _embed_job(end.job_id, knowledge_set.project_id, knowledge_set.id, workflow_id)
        session.add(job)
    job.status = end.status.value
    job.error = end.error
    job.updated_at = utcnow()


def _embed_job(job_id: str, project_id: str, set_id: str, workflow_id: str | None) -> KnowledgeJob:
    return KnowledgeJob(
        id=job_id,
        project_id=project_id,
        set_id=set_id,
        kind=JobKind.embed.value,
        status=JobStatus.running.value,
        workflow_id=workflow_id,
        done=0,
    )


# ---------------------------------------------------------------------------------------------
# Enrichment


async def active_enrichment_job(*, session: AsyncSession, set_id: str) -> KnowledgeJob | None:
    query = select(KnowledgeJob).where(
        KnowledgeJob.set_id == set_id,
        KnowledgeJob.kind == JobKind.enrich.value,
        KnowledgeJob.status.in_(ACTIVE_STATUSES),
    )
    return (await session.scalars(query.limit(1))).first()


async def create_enrichment_job(
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


async def get_enrichment_job(
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


async def list_enrichment_jobs(
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


async def set_enrichment_progress(
    *, session: AsyncSession, job_id: str, done: int, failed: int, status: JobStatus | None = None
) -> None:
    values: dict[str, Any] = {"done": done, "failed": failed, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status.value
    await session.execute(update(KnowledgeJob).where(KnowledgeJob.id == job_id).values(**values))


async def finish_enrichment_job(
    *,
    session: AsyncSession,
    job_id: str,
    status: JobStatus,
    done: int | None,
    failed: int | None,
    error: str | None,
) -> None:
    """Ends an enrichment; its total stays the rows it was started over."""
    values: dict[str, Any] = {"status": status.value, "error": error, "updated_at": utcnow()}
    if done is not None and failed is not None:
        values.update(done=done, failed=failed)
    await session.execute(update(KnowledgeJob).where(KnowledgeJob.id == job_id).values(**values))
