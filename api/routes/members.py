"""Members of the organisation and of each project; adding and removing one is audited."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    ActorDep,
    Admin,
    OrgAdmin,
    OrgViewer,
    PageDep,
    PlansDep,
    ProjectDep,
    SessionDep,
    Viewer,
    require_grantable,
)
from api.schemas.accounts import MemberCreate, MemberPublic
from api.schemas.paging import Page
from baton.db.repositories import accounts, audit, plan_limits
from baton.db.tables import Membership, User
from baton.domain.accounts import Role
from baton.domain.audit import Actor, AuditAction, Target

router = APIRouter(prefix="/api/v1", tags=["members"])


def _public(pair: tuple[Membership, User]) -> MemberPublic:
    membership, user = pair
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
async def list_org_members(
    session: SessionDep, principal: OrgViewer, page: PageDep
) -> Page[MemberPublic]:
    rows = await accounts.list_members(
        session=session, org_id=principal.org_id, project_id=None, page=page
    )
    return Page[MemberPublic].of(rows, _public)


@router.post("/members", status_code=status.HTTP_201_CREATED)
async def add_org_member(
    body: MemberCreate, session: SessionDep, plans: PlansDep, principal: OrgAdmin, actor: ActorDep
) -> MemberPublic:
    """Refused with 402 plan_limit_reached when it would be a person more than the plan's
    `max_members`."""
    require_grantable(principal, body.role)
    await plan_limits.require_room_for_member(
        session=session, plans=plans, org_id=principal.org_id, email=str(body.email)
    )
    membership, user = await accounts.add_member(
        session=session,
        org_id=principal.org_id,
        project_id=None,
        email=str(body.email),
        name=body.name,
        role=body.role,
    )
    await _audit(session, actor, AuditAction.member_added, membership)
    return _public((membership, user))


@router.delete("/members/{membership_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_org_member(
    membership_id: str, session: SessionDep, principal: OrgAdmin, actor: ActorDep
) -> None:
    membership = await accounts.remove_member(
        session=session,
        org_id=principal.org_id,
        project_id=None,
        membership_id=membership_id,
        by=principal,
    )
    await _audit(session, actor, AuditAction.member_removed, membership)


@router.get("/projects/{project_id}/members")
async def list_project_members(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[MemberPublic]:
    rows = await accounts.list_members(
        session=session, org_id=project.org_id, project_id=project.id, page=page
    )
    return Page[MemberPublic].of(rows, _public)


@router.post("/projects/{project_id}/members", status_code=status.HTTP_201_CREATED)
async def add_project_member(
    body: MemberCreate,
    project: ProjectDep,
    session: SessionDep,
    plans: PlansDep,
    principal: Admin,
    actor: ActorDep,
) -> MemberPublic:
    """Refused with 402 plan_limit_reached as for the organisation's members."""
    require_grantable(principal, body.role)
    await plan_limits.require_room_for_member(
        session=session, plans=plans, org_id=principal.org_id, email=str(body.email)
    )
    membership, user = await accounts.add_member(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        email=str(body.email),
        name=body.name,
        role=body.role,
    )
    await _audit(session, actor, AuditAction.member_added, membership)
    return _public((membership, user))


@router.delete(
    "/projects/{project_id}/members/{membership_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def remove_project_member(
    membership_id: str,
    project: ProjectDep,
    session: SessionDep,
    principal: Admin,
    actor: ActorDep,
) -> None:
    membership = await accounts.remove_member(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        membership_id=membership_id,
        by=principal,
    )
    await _audit(session, actor, AuditAction.member_removed, membership)


async def _audit(
    session: AsyncSession, actor: Actor, action: AuditAction, membership: Membership
) -> None:
    await audit.record(
        session=session,
        org_id=membership.org_id,
        project_id=membership.project_id,
        actor=actor,
        action=action,
        target=Target("membership", membership.id),
        detail={"user_id": membership.user_id, "role": membership.role},
    )
