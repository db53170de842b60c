"""Projects of the caller's organisation."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import OrgAdmin, PageDep, PlansDep, PrincipalDep, ProjectDep, SessionDep
from api.schemas.accounts import ProjectCreate, ProjectPublic
from api.schemas.paging import Page
from baton.db.repositories import accounts, plan_limits

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


@router.get("")
async def list_projects(
    session: SessionDep, principal: PrincipalDep, page: PageDep
) -> Page[ProjectPublic]:
    """The projects the token reaches (a project token: its own), oldest first."""
    projects = await accounts.list_projects(session=session, principal=principal, page=page)
    return Page[ProjectPublic].of(projects, ProjectPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(
    body: ProjectCreate, session: SessionDep, plans: PlansDep, principal: OrgAdmin
) -> ProjectPublic:
    """Refused with 402 plan_limit_reached when the plan's `max_projects` are there."""
    await plan_limits.require_room_for_project(
        session=session, plans=plans, org_id=principal.org_id
    )
    project = await accounts.create_project(
        session=session, org_id=principal.org_id, name=body.name
    )
    return ProjectPublic.model_validate(project)


@router.get("/{project_id}")
async def get_project(project: ProjectDep) -> ProjectPublic:
    return ProjectPublic.model_validate(project)
