"""Projects of the caller's organisation."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import PrincipalDep, ProjectDep, SessionDep, require_org_scope, require_role
from api.schemas.accounts import ProjectCreate, ProjectPublic
from baton.db.repositories import accounts
from baton.domain.accounts import Role

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


@router.get("")
async def list_projects(session: SessionDep, principal: PrincipalDep) -> list[ProjectPublic]:
    projects = await accounts.list_projects(session=session, principal=principal)
    return [ProjectPublic.model_validate(p) for p in projects]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(
    body: ProjectCreate, session: SessionDep, principal: PrincipalDep
) -> ProjectPublic:
    require_role(principal, Role.admin)
    require_org_scope(principal)
    project = await accounts.create_project(
        session=session, org_id=principal.org_id, name=body.name
    )
    return ProjectPublic.model_validate(project)


@router.get("/{project_id}")
async def get_project(project: ProjectDep) -> ProjectPublic:
    return ProjectPublic.model_validate(project)
