"""Enrichment jobs: a tool run over every row of a knowledge set, with progress and cancel."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import (
    Editor,
    KnowledgeSetDep,
    PageDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
)
from api.schemas.enrichment import EnrichmentPublic
from api.schemas.paging import Page
from baton import temporal
from baton.db.repositories import knowledge_jobs as job_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import KnowledgeJob, KnowledgeSet
from baton.domain.enrichment import (
    EnrichmentCreate,
    EnrichmentInput,
    EnrichmentPlan,
    EnrichmentProgress,
    check_enrichment,
)
from baton.domain.knowledge import JobStatus, KnowledgeColumn
from baton.domain.tool_checks import referenced_snippets
from baton.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from baton.settings import Settings
from workflows.enrichment import EnrichmentWorkflow

logger = logging.getLogger("baton.api")

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/knowledge/sets/{set_id}/enrichments",
    tags=["knowledge"],
    dependencies=[Depends(get_project)],
)
FINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_enrichment(
    body: EnrichmentCreate,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> EnrichmentPublic:
    """Runs the tool for every row not yet enriched; one job at a time per set."""
    set_id = knowledge_set.id
    try:
        tool = await tool_repo.get_tool(
            session=session, project_id=project.id, tool_id=body.tool_id
        )
    except NotFound as exc:
        raise InvalidInput(
            f"tool_id: no tool {body.tool_id!r} in this project",
            details=[{"field": "tool_id", "message": "no such tool in this project"}],
        ) from exc
    _version, spec = await tool_repo.get_spec(session=session, tool_id=tool.id)
    columns = [KnowledgeColumn.model_validate(c) for c in knowledge_set.columns]
    check_enrichment(body, spec, columns)
    running = await job_repo.active_enrichment_job(session=session, set_id=set_id)
    if running is not None:
        raise Conflict(
            f"enrichment {running.id} of this set is still {running.status}; cancel it first",
            details={"job_id": running.id},
        )
    total, last_row_id = await row_repo.row_span(session=session, set_id=set_id)
    job = await job_repo.create_enrichment_job(
        session=session,
        job_id=str(uuid.uuid4()),
        project_id=project.id,
        set_id=set_id,
        request=body,
        total=total,
    )
    plan = EnrichmentPlan(
        job_id=job.id,
        project_id=project.id,
        set_id=set_id,
        tool=spec,
        input_mapping=body.input_mapping,
        output_mapping=body.output_mapping,
        error_column=body.resolved_error_column,
        snippets=await snippet_repo.snippet_values(
            session=session, project_id=project.id, names=referenced_snippets(spec)
        ),
        concurrency=body.concurrency,
        batch_size=body.batch_size,
        last_row_id=last_row_id,
    )
    await session.commit()
    await _start(session, temporal_client, settings, job, plan, knowledge_set, spec.name)
    return EnrichmentPublic.of(job, _link(settings, job))


@router.get("")
async def list_enrichments(
    project: ProjectDep,
    session: SessionDep,
    _: Viewer,
    knowledge_set: KnowledgeSetDep,
    settings: SettingsDep,
    page: PageDep,
) -> Page[EnrichmentPublic]:
    """Newest first."""
    jobs = await job_repo.list_enrichment_jobs(
        session=session, project_id=project.id, set_id=knowledge_set.id, page=page
    )
    return Page[EnrichmentPublic].of(
        jobs, lambda job: EnrichmentPublic.of(job, _link(settings, job))
    )


@router.get("/{job_id}")
async def get_enrichment(
    set_id: str,
    job_id: str,
    project: ProjectDep,
    session: SessionDep,
    _: Viewer,
    settings: SettingsDep,
) -> EnrichmentPublic:
    job = await job_repo.get_enrichment_job(
        session=session, project_id=project.id, set_id=set_id, job_id=job_id
    )
    return EnrichmentPublic.of(job, _link(settings, job))


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_enrichment(
    set_id: str,
    job_id: str,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    """Stops the job; rows already written stay enriched, and a new job goes on from there."""
    job = await job_repo.get_enrichment_job(
        session=session, project_id=project.id, set_id=set_id, job_id=job_id
    )
    if JobStatus(job.status) in FINAL_STATUSES:
        raise Conflict(f"the job has already {job.status}")
    await temporal_client.get_workflow_handle(job.workflow_id or "").cancel()
    return {"status": "cancelling"}


async def _start(
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    job: KnowledgeJob,
    plan: EnrichmentPlan,
    knowledge_set: KnowledgeSet,
    tool_name: str,
) -> None:
    try:
        await temporal_client.start_workflow(
            EnrichmentWorkflow.run,
            EnrichmentInput(plan=plan, progress=EnrichmentProgress(total=job.total)),
            id=job.workflow_id or "",
            task_queue=settings.temporal_task_queue,
            search_attributes=temporal.run_search_attributes(
                project_id=plan.project_id, kind="enrich", status=JobStatus.queued.value
            ),
            static_summary=f"enrich {knowledge_set.name} with {tool_name}",
        )
    except (RPCError, RuntimeError) as exc:
        logger.warning("could not start enrichment %s: %s", job.id, exc)
        await job_repo.finish_enrichment_job(
            session=session,
            job_id=job.id,
            status=JobStatus.failed,
            done=None,
            failed=None,
            error="the job could not be started: Temporal is unavailable",
        )
        await session.commit()
        raise ServiceUnavailable(
            "Temporal is unavailable; the job was not started", details={"job_id": job.id}
        ) from exc


def _link(settings: Settings, job: KnowledgeJob) -> str | None:
    return settings.temporal_ui_link(job.workflow_id) if job.workflow_id else None
