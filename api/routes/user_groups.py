"""User groups: the end customers of a product that embeds Baton. `POST /api/user` follows
its documentation page exactly; listing and deleting live under `/api/v1/user-groups`.
Creating, rotating and deleting one is audited (never with its token)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ActorDep, OrgAdmin, OrgViewer, PageDep, SessionDep
from api.schemas.paging import Page
from api.schemas.user_groups import (
    UserGroupBody,
    UserGroupPublic,
    UserGroupRequest,
    UserGroupResponse,
)
from baton.db.repositories import accounts, audit
from baton.db.tables import UserGroup
from baton.domain.accounts import UserGroupEnvironment
from baton.domain.audit import Actor, AuditAction, Target
from baton.errors import InvalidInput

router = APIRouter(tags=["user groups"])


def _body(group: UserGroup, token: str) -> UserGroupResponse:
    return UserGroupResponse(
        user_group=UserGroupBody(
            team_id=group.org_id,
            token=token,
            name=group.name,
            provided_id=group.provided_id,
            environment=UserGroupEnvironment(group.environment),
        )
    )


@router.post(
    "/api/user",
    summary="Create a user group, or rotate its token",
    responses={409: {"description": "provided_id already used in this environment"}},
)
async def create_or_rotate_user_group(
    body: UserGroupRequest, session: SessionDep, principal: OrgAdmin, actor: ActorDep
) -> UserGroupResponse:
    """With an empty `current_token`, creates a user group named `name` with your
    `provided_id` (also accepted as `user_group_id`) in `environment` (`Customer` or
    `Testing`). With a group's current token, issues a new one; the old stops working at once."""
    if body.current_token:
        group, token = await accounts.rotate_user_group_token(
            session=session, org_id=principal.org_id, current_token=body.current_token
        )
        await _audit(session, actor, AuditAction.user_group_rotated, group)
        return _body(group, token)
    if not body.name or not body.provided_id:
        missing = [field for field in ("name", "provided_id") if not getattr(body, field)]
        raise InvalidInput(
            f"creating a user group needs {' and '.join(missing)}",
            details={"missing": missing},
        )
    group, token = await accounts.create_user_group(
        session=session,
        org_id=principal.org_id,
        name=body.name,
        provided_id=body.provided_id,
        environment=body.environment,
    )
    await _audit(session, actor, AuditAction.user_group_created, group)
    return _body(group, token)


@router.get("/api/v1/user-groups")
async def list_user_groups(
    session: SessionDep, principal: OrgViewer, page: PageDep
) -> Page[UserGroupPublic]:
    groups = await accounts.list_user_groups(session=session, org_id=principal.org_id, page=page)
    return Page[UserGroupPublic].of(groups, UserGroupPublic.model_validate)


@router.delete("/api/v1/user-groups/{user_group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user_group(
    user_group_id: str, session: SessionDep, principal: OrgAdmin, actor: ActorDep
) -> None:
    group = await accounts.delete_user_group(
        session=session, org_id=principal.org_id, user_group_id=user_group_id
    )
    await _audit(session, actor, AuditAction.user_group_deleted, group)


async def _audit(
    session: AsyncSession, actor: Actor, action: AuditAction, group: UserGroup
) -> None:
    await audit.record(
        session=session,
        org_id=group.org_id,
        project_id=None,
        actor=actor,
        action=action,
        target=Target("user_group", group.id),
        detail={
            "name": group.name,
            "provided_id": group.provided_id,
            "environment": group.environment,
        },
    )
