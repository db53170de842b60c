"""Project secrets: written, listed by name, deleted; never read back. Writing and deleting
are audited by the secret's name: its value goes nowhere but its ciphertext."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ActorDep, Admin, PageDep, ProjectDep, SessionDep, Viewer, get_project
from api.schemas.paging import Page
from api.schemas.tools import SecretPublic, SecretPut
from baton.db.repositories import audit
from baton.db.repositories import secrets as secret_repo
from baton.db.tables import Project
from baton.domain.audit import Actor, AuditAction, Target
from baton.domain.tools import IDENTIFIER
from baton.security import SecretBox

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/secrets",
    tags=["secrets"],
    dependencies=[Depends(get_project)],
)

SecretName = Annotated[str, Path(pattern=IDENTIFIER)]


@router.get("")
async def list_secrets(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[SecretPublic]:
    """By name."""
    rows = await secret_repo.list_secrets(session=session, project_id=project.id, page=page)
    return Page[SecretPublic].of(rows, SecretPublic.model_validate)


@router.put("/{name}")
async def put_secret(
    name: SecretName,
    body: SecretPut,
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    _: Admin,
    actor: ActorDep,
) -> SecretPublic:
    box: SecretBox = request.app.state.secret_box
    row = await secret_repo.put_secret(
        session=session, box=box, project_id=project.id, name=name, value=body.value
    )
    await _audit(session, actor, AuditAction.secret_written, project, name)
    return SecretPublic.model_validate(row)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_secret(
    name: SecretName, project: ProjectDep, session: SessionDep, _: Admin, actor: ActorDep
) -> None:
    await secret_repo.delete_secret(session=session, project_id=project.id, name=name)
    await _audit(session, actor, AuditAction.secret_deleted, project, name)


async def _audit(
    session: AsyncSession, actor: Actor, action: AuditAction, project: Project, name: str
) -> None:
    await audit.record(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        actor=actor,
        action=action,
        target=Target("secret", name),
    )
