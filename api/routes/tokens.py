"""API tokens: created (shown once), listed, revoked; creating and revoking are audited."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import ActorDep, Admin, PageDep, SessionDep, require_grantable
from api.schemas.accounts import TokenCreate, TokenCreated, TokenPublic
from api.schemas.paging import Page
from baton.db.repositories import accounts, audit
from baton.db.tables import ApiToken, utcnow
from baton.domain.audit import Actor, AuditAction, Target
from baton.errors import InvalidInput, PermissionDenied

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.get("")
async def list_tokens(session: SessionDep, principal: Admin, page: PageDep) -> Page[TokenPublic]:
    """Oldest first, revoked ones too (with `revoked_at`)."""
    rows = await accounts.list_api_tokens(session=session, principal=principal, page=page)
    return Page[TokenPublic].of(rows, TokenPublic.model_validate)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(
    body: TokenCreate, session: SessionDep, principal: Admin, actor: ActorDep
) -> TokenCreated:
    require_grantable(principal, body.role)
    if principal.project_id is not None and body.project_id != principal.project_id:
        raise PermissionDenied("a project token can only create tokens for its own project")
    if body.project_id is not None:
        await accounts.get_project(session=session, principal=principal, project_id=body.project_id)
    if body.expires_at is not None:
        if body.expires_at.tzinfo is None:
            raise InvalidInput(
                "expires_at needs a time zone, for example 2030-01-01T00:00:00Z",
                details={"field": "expires_at"},
            )
        if body.expires_at <= utcnow():
            raise InvalidInput("expires_at is in the past", details={"field": "expires_at"})
    row, token = await accounts.create_api_token(
        session=session,
        org_id=principal.org_id,
        project_id=body.project_id,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
    )
    await _audit(session, actor, AuditAction.token_created, row)
    return TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=token)


@router.delete("/{token_id}")
async def revoke_token(
    token_id: str, session: SessionDep, principal: Admin, actor: ActorDep
) -> TokenPublic:
    """Revoking a revoked token changes nothing and records nothing."""
    row, revoked = await accounts.revoke_api_token(
        session=session, principal=principal, token_id=token_id
    )
    if revoked:
        await _audit(session, actor, AuditAction.token_revoked, row)
    return TokenPublic.model_validate(row)


async def _audit(session: AsyncSession, actor: Actor, action: AuditAction, row: ApiToken) -> None:
    await audit.record(
        session=session,
        org_id=row.org_id,
        project_id=row.project_id,
        actor=actor,
        action=action,
        target=Target("token", row.id),
        detail={"name": row.name, "role": row.role},
    )
