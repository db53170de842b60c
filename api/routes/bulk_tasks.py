"""Bulk tasks: one task of an agent per row of a knowledge set, at a pace, within hours."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import (
    AgentDep,
    Editor,
    PageDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
)
from api.schemas.bulk_tasks import BulkCounts, BulkRowPublic, BulkTaskDetail, BulkTaskPublic
from api.schemas.paging import Page
from baton import temporal
from baton.db.paging import PageRequest
from baton.db.repositories import bulk_tasks as bulk_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.tables import BulkTaskRun
from baton.domain.bulk_tasks import (
    BulkPlan,
    BulkStatus,
    BulkTaskCreate,
    BulkTaskInput,
    RowState,
    check_message_template,
    row_progress,
)
from baton.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from baton.knowledge.filters import filter_clause
from baton.services.tasks import task_summary
from baton.settings import Settings
from workflows.bulk_tasks import BulkTaskWorkflow

logger = logging.getLogger("baton.api")

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/agents/{agent_id}/bulk-tasks",
    tags=["agents"],
    dependencies=[Depends(get_project)],
)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_bulk_tasks(
    body: BulkTaskCreate,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    agent: AgentDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> BulkTaskPublic:
    """Starts a task of the agent for every row of the set that matches `filters`, rendering
    `message_template` with the row as `row`; `per_interval` tasks every `interval_seconds`,
    only within `working_hours` if given."""
    try:
        knowledge_set = await set_repo.get_set(
            session=session, project_id=project.id, set_id=body.set_id
        )
    except NotFound as exc:
        raise InvalidInput(
            f"set_id: no knowledge set {body.set_id!r} in this project",
            details=[{"field": "set_id", "message": "no such knowledge set in this project"}],
        ) from exc
    spec = set_repo.spec_of(knowledge_set)
    check_message_template(body.message_template, spec.columns)
    row_ids = await row_repo.matching_row_ids(
        session=session, set_id=knowledge_set.id, where=filter_clause(spec, body.filters)
    )
    run = await bulk_repo.create_run(
        session=session,
        bulk_id=str(uuid.uuid4()),
        project_id=project.id,
        agent_id=agent.id,
        set_id=knowledge_set.id,
        params=body.model_dump(mode="json", by_alias=True, exclude={"set_id"}),
        row_ids=row_ids,
    )
    await session.commit()
    plan = BulkPlan(
        bulk_id=run.id,
        project_id=project.id,
        agent_id=agent.id,
        per_interval=body.per_interval,
        interval_seconds=body.interval_seconds,
        working_hours=body.working_hours,
    )
    summary = f"{agent.name}, {len(row_ids)} rows"
    await _start(session, temporal_client, settings, run, plan, summary)
    await session.refresh(run)
    return await _public(session, settings, run)


@router.get("")
async def list_bulk_tasks(
    project: ProjectDep,
    session: SessionDep,
    _: Viewer,
    agent: AgentDep,
    settings: SettingsDep,
    page: PageDep,
) -> Page[BulkTaskPublic]:
    """Newest first."""
    runs = await bulk_repo.list_runs(
        session=session, project_id=project.id, agent_id=agent.id, page=page
    )
    return Page(
        items=[await _public(session, settings, run) for run in runs.items],
        next_cursor=runs.next_cursor,
    )


@router.get("/{bulk_id}")
async def get_bulk_tasks(
    bulk_id: str,
    project: ProjectDep,
    session: SessionDep,
    _: Viewer,
    agent: AgentDep,
    settings: SettingsDep,
    page: PageDep,
) -> BulkTaskDetail:
    run = await bulk_repo.get_run(
        session=session, project_id=project.id, agent_id=agent.id, bulk_id=bulk_id
    )
    public = await _public(session, settings, run)
    return BulkTaskDetail(**public.model_dump(), rows=await _rows(session, run, page))


@router.post("/{bulk_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_bulk_tasks(
    bulk_id: str,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    agent: AgentDep,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    """Stops the run: rows not started yet become cancelled; tasks already started go on
    (cancel those one by one if they must stop)."""
    run = await bulk_repo.get_run(
        session=session, project_id=project.id, agent_id=agent.id, bulk_id=bulk_id
    )
    if BulkStatus(run.status).is_final:
        raise Conflict(f"the bulk run has already {run.status}")
    try:
        await temporal_client.get_workflow_handle(run.workflow_id).cancel()
    except (RPCError, RuntimeError) as exc:
        raise ServiceUnavailable("Temporal is unavailable; the run was not cancelled") from exc
    return {"status": "cancelling"}


async def _start(
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    run: BulkTaskRun,
    plan: BulkPlan,
    summary: str,
) -> None:
    try:
        await temporal_client.start_workflow(
            BulkTaskWorkflow.run,
            BulkTaskInput(plan=plan),
            id=run.workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=temporal.run_search_attributes(
                project_id=plan.project_id,
                kind="bulk-tasks",
                status=BulkStatus.queued.value,
                agent_id=plan.agent_id,
            ),
            static_summary=task_summary(f"bulk {summary}", run.params["message_template"]),
        )
    except (RPCError, RuntimeError) as exc:
        logger.warning("could not start bulk run %s: %s", run.id, exc)
        await bulk_repo.set_status(
            session=session,
            bulk_id=run.id,
            status=BulkStatus.failed,
            error="the run could not be started: Temporal is unavailable",
        )
        await bulk_repo.cancel_upcoming(session=session, bulk_id=run.id)
        await session.commit()
        raise ServiceUnavailable(
            "Temporal is unavailable; the run was not started", details={"bulk_id": run.id}
        ) from exc


async def _public(session: AsyncSession, settings: Settings, run: BulkTaskRun) -> BulkTaskPublic:
    params = run.params
    return BulkTaskPublic(
        id=run.id,
        agent_id=run.agent_id,
        set_id=run.set_id,
        status=BulkStatus(run.status),
        waiting_until=run.waiting_until,
        total=run.total,
        counts=BulkCounts.of(await bulk_repo.row_counts(session=session, bulk_id=run.id)),
        message_template=params["message_template"],
        filters=params.get("filters", []),
        per_interval=params["per_interval"],
        interval_seconds=params["interval_seconds"],
        working_hours=params.get("working_hours"),
        error=run.error,
        workflow_id=run.workflow_id,
        temporal_ui_url=settings.temporal_ui_link(run.workflow_id),
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


async def _rows(session: AsyncSession, run: BulkTaskRun, page: PageRequest) -> Page[BulkRowPublic]:
    rows = await bulk_repo.list_rows(session=session, bulk_id=run.id, page=page)
    return Page(
        items=[
            BulkRowPublic(
                row_id=row.row_id,
                status=row_progress(RowState(row.state), task_status),
                task_id=row.task_id,
                task_status=task_status,
                error=row.error,
                started_at=row.started_at,
            )
            for row, task_status in rows.items
        ],
        next_cursor=rows.next_cursor,
    )
