"""Members of the organisation and of each project."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import (
    PrincipalDep,
    ProjectDep,
    SessionDep,
    require_grantable,
    require_org_scope,
    require_role,
)
from api.schemas.accounts import MemberCreate, MemberPublic
from baton.db.repositories import accounts
from baton.db.tables import Membership, User
from baton.domain.accounts import Role

router = APIRouter(prefix="/api/v1", tags=["members"])


def _public(membership: Membership, user: User) -> MemberPublic:
    return MemberPublic(
        id=membership.id,
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=Role(membership.role),
        project_id=membership.project_id,
        created_at=membership.created_at,
    )


@router.get("/members")
async def list_org_members(session: SessionDep, principal: PrincipalDep) -> list[MemberPublic]:
    require_role(principal, Role.viewer)
    require_org_scope(principal)
    rows = await accounts.list_members(session=session, org_id=principal.org_id, project_id=None)
    return [_public(m, u) for m, u in rows]


@router.post("/members", status_code=status.HTTP_201_CREATED)
async def add_org_member(
    body: MemberCreate, session: SessionDep, principal: PrincipalDep
) -> MemberPublic:
    require_role(principal, Role.admin)
    require_org_scope(principal)
    require_grantable(principal, body.role)
    membership, user = await accounts.add_member(
        session=session,
        org_id=principal.org_id,
        project_id=None,
        email=str(body.email),
        name=body.name,
        role=body.role,
    )
    return _public(membership, user)


@router.delete("/members/{membership_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_org_member(
    membership_id: str, session: SessionDep, principal: PrincipalDep
) -> None:
    require_role(principal, Role.admin)
    require_org_scope(principal)
    await accounts.remove_member(
        session=session,
        org_id=principal.org_id,
        project_id=None,
        membership_id=membership_id,
        by=principal,
    )


@router.get("/projects/{project_id}/members")
async def list_project_members(
    project: ProjectDep, session: SessionDep, principal: PrincipalDep
) -> list[MemberPublic]:
    require_role(principal, Role.viewer)
    rows = await accounts.list_members(
        session=session, org_id=project.org_id, project_id=project.id
    )
    return [_public(m, u) for m, u in rows]


@router.post("/projects/{project_id}/members", status_code=status.HTTP_201_CREATED)
async def add_project_member(
    body: MemberCreate, project: ProjectDep, session: SessionDep, principal: PrincipalDep
) -> MemberPublic:
    require_role(principal, Role.admin)
    require_grantable(principal, body.role)
    membership, user = await accounts.add_member(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        email=str(body.email),
        name=body.name,
        role=body.role,
    )
    return _public(membership, user)


@router.delete(
    "/projects/{project_id}/members/{membership_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def remove_project_member(
    membership_id: str, project: ProjectDep, session: SessionDep, principal: PrincipalDep
) -> None:
    require_role(principal, Role.admin)
    await accounts.remove_member(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        membership_id=membership_id,
        by=principal,
    )
