"""Tool runs: status, per-step results, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import PrincipalDep, ProjectDep, SessionDep, SettingsDep, TemporalDep, require_role
from api.limits import MAX_DB_INTEGER
from api.schemas.tools import ToolRunPublic
from baton.db.repositories import tool_runs as run_repo
from baton.domain.accounts import Role
from baton.domain.tools import ToolRunStatus
from baton.errors import Conflict
from baton.services.tool_runs import run_view

router = APIRouter(prefix="/api/v1/projects/{project_id}/tool-runs", tags=["tool runs"])


@router.get("")
async def list_runs(
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    tool_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INTEGER)] = 0,
) -> list[ToolRunPublic]:
    require_role(principal, Role.viewer)
    runs = await run_repo.list_runs(
        session=session, project_id=project.id, tool_id=tool_id, limit=limit, offset=offset
    )
    return [ToolRunPublic.of(r, [], settings.temporal_ui_link(r.workflow_id)) for r in runs]


@router.get("/{run_id}")
async def get_run(
    run_id: str,
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> ToolRunPublic:
    require_role(principal, Role.viewer)
    run = await run_repo.get_run(session=session, project_id=project.id, run_id=run_id)
    status, steps = await run_view(session=session, temporal_client=temporal_client, run=run)
    return ToolRunPublic.of(run, steps, settings.temporal_ui_link(run.workflow_id), status)


@router.post("/{run_id}/cancel", status_code=202)
async def cancel_run(
    run_id: str,
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    temporal_client: TemporalDep,
) -> dict[str, str]:
    """Asks the run to stop; a running HTTP or code step notices at its next heartbeat."""
    require_role(principal, Role.editor)
    run = await run_repo.get_run(session=session, project_id=project.id, run_id=run_id)
    if ToolRunStatus(run.status).is_final:
        raise Conflict(f"the run has already {run.status}")
    await temporal_client.get_workflow_handle(run.workflow_id).cancel()
    return {"status": "cancelling"}
