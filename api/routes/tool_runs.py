"""Tool runs: status, per-step results, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import (
    Editor,
    PageDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
)
from api.schemas.paging import Page
from api.schemas.tools import ToolRunPublic
from baton.db.repositories import cost as cost_repo
from baton.db.repositories import tool_runs as run_repo
from baton.domain.tools import ToolRunStatus
from baton.errors import Conflict
from baton.services.tool_runs import run_view

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/tool-runs",
    tags=["tool runs"],
    dependencies=[Depends(get_project)],
)


@router.get("")
async def list_runs(
    project: ProjectDep,
    session: SessionDep,
    _: Viewer,
    settings: SettingsDep,
    page: PageDep,
    tool_id: str | None = None,
) -> Page[ToolRunPublic]:
    """Newest first, without their steps (`GET .../tool-runs/{id}` has them)."""
    runs = await run_repo.list_runs(
        session=session, project_id=project.id, tool_id=tool_id, page=page
    )
    return Page[ToolRunPublic].of(
        runs, lambda r: ToolRunPublic.of(r, [], settings.temporal_ui_link(r.workflow_id))
    )


@router.get("/{run_id}")
async def get_run(
    run_id: str,
    project: ProjectDep,
    session: SessionDep,
    _: Viewer,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> ToolRunPublic:
    run = await run_repo.get_run(session=session, project_id=project.id, run_id=run_id)
    status, steps = await run_view(session=session, temporal_client=temporal_client, run=run)
    cost = await cost_repo.tool_run_cost(session=session, run_id=run.id)
    return ToolRunPublic.of(run, steps, settings.temporal_ui_link(run.workflow_id), status, cost)


@router.post("/{run_id}/cancel", status_code=202)
async def cancel_run(
    run_id: str,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    """Asks the run to stop; a running HTTP or code step notices at its next heartbeat."""
    run = await run_repo.get_run(session=session, project_id=project.id, run_id=run_id)
    if ToolRunStatus(run.status).is_final:
        raise Conflict(f"the run has already {run.status}")
    await temporal_client.get_workflow_handle(run.workflow_id).cancel()
    return {"status": "cancelling"}
