"""Share links (`.../agents/{id}/share`, `.../tools/{id}/share`): an editor turns one on, lists
and revokes it; the public pages they open live in api/sharing/. And dashboard sessions: a
user group's token exchanged for a one-time URL of its dashboard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    ActorDep,
    Editor,
    PageDep,
    PrincipalDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    get_agent,
    get_project,
    get_tool,
)
from api.schemas.paging import Page
from api.schemas.shares import DashboardSession, ShareCreate, ShareCreated, SharePublic
from baton.db.repositories import accounts, audit
from baton.db.repositories import shares as share_repo
from baton.db.repositories.shares import Target
from baton.db.tables import Agent, Project, ShareLink, Tool, utcnow
from baton.domain.audit import Actor, AuditAction
from baton.domain.audit import Target as AuditTarget
from baton.errors import InvalidInput, PermissionDenied
from baton.settings import Settings

# How long a dashboard URL may wait to be opened: it is for an iframe about to load.
DASHBOARD_CODE_SECONDS = 60

dashboard_router = APIRouter(
    prefix="/api/v1/projects/{project_id}/dashboard-sessions",
    tags=["sharing"],
    dependencies=[Depends(get_project)],
)


def public_url(request: Request, settings: Settings, path: str) -> str:
    """An address of this API as a browser reaches it: the configured public URL, else the
    one the request came to."""
    base = settings.api_public_url or str(request.base_url)
    return base.rstrip("/") + path


def share_router(
    noun: Literal["agent", "tool"],
    load: Callable[..., Awaitable[Agent | Tool]],
    *,
    share_summary: str,
    list_summary: str,
    for_user_groups: bool,
) -> APIRouter:
    """The create/list/revoke routes of one kind of shared thing, at
    `.../{noun}s/{<noun>_id}/share`; `load` is the dependency that finds it (404 otherwise).
    Route names (hence OpenAPI operation ids) stay `share_<noun>`, `list_<noun>_shares`,
    `revoke_<noun>_share`."""
    router = APIRouter(
        prefix=f"/api/v1/projects/{{project_id}}/{noun}s/{{{noun}_id}}/share",
        tags=["sharing"],
        dependencies=[Depends(get_project)],
    )

    subject_dep = Depends(load)

    def target_of(project: Project, subject: Agent | Tool) -> Target:
        if noun == "agent":
            return Target(project_id=project.id, agent_id=subject.id)
        return Target(project_id=project.id, tool_id=subject.id)

    @router.post(
        "", name=f"share_{noun}", status_code=status.HTTP_201_CREATED, summary=share_summary
    )
    async def share(
        body: ShareCreate,
        request: Request,
        project: ProjectDep,
        session: SessionDep,
        settings: SettingsDep,
        _: Editor,
        actor: ActorDep,
        subject: Agent | Tool = subject_dep,
    ) -> ShareCreated:
        if body.user_group is not None and not for_user_groups:
            raise InvalidInput(
                "user_group: only agents are shared with a user group",
                details=[{"field": "user_group", "message": "only for agents"}],
            )
        target = target_of(project, subject)
        return await _share(request, settings, session, project, actor, target, body)

    @router.get("", name=f"list_{noun}_shares", summary=list_summary)
    async def list_shares(
        project: ProjectDep,
        session: SessionDep,
        _: Editor,
        subject: Agent | Tool = subject_dep,
        *,
        page: PageDep,
    ) -> Page[SharePublic]:
        target = target_of(project, subject)
        shares = await share_repo.list_shares(session=session, target=target, page=page)
        return Page[SharePublic].of(shares, SharePublic.model_validate)

    @router.delete(
        "/{share_id}",
        name=f"revoke_{noun}_share",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Revoke a share link: its page stops working at once",
    )
    async def revoke(
        share_id: str,
        project: ProjectDep,
        session: SessionDep,
        _: Editor,
        actor: ActorDep,
        subject: Agent | Tool = subject_dep,
    ) -> None:
        target = target_of(project, subject)
        share, revoked_now = await share_repo.revoke_share(
            session=session, target=target, share_id=share_id
        )
        if revoked_now:
            await _audit(session, project, actor, AuditAction.sharing_disabled, target, share)

    return router


agent_router = share_router(
    "agent",
    get_agent,
    share_summary="Share an agent: a public chat page, or its place on a user group's dashboard",
    list_summary="An agent's share links",
    for_user_groups=True,
)
tool_router = share_router(
    "tool",
    get_tool,
    share_summary="Share a tool: a public run form",
    list_summary="A tool's share links",
    for_user_groups=False,
)


async def _share(
    request: Request,
    settings: Settings,
    session: AsyncSession,
    project: Project,
    actor: Actor,
    target: Target,
    body: ShareCreate,
) -> ShareCreated:
    expires_at = _expiry(body)
    user_group_id = None
    if body.user_group is not None:
        group = await accounts.find_user_group(
            session=session,
            org_id=project.org_id,
            provided_id=body.user_group,
            environment=body.user_group_environment,
        )
        user_group_id = group.id
    share, token = await share_repo.create_share(
        session=session, target=target, expires_at=expires_at, user_group_id=user_group_id
    )
    await _audit(session, project, actor, AuditAction.sharing_enabled, target, share)
    return ShareCreated(
        id=share.id,
        url=None if user_group_id else public_url(request, settings, f"/share/{token}"),
        expires_at=share.expires_at,
        user_group_id=user_group_id,
    )


def _expiry(body: ShareCreate) -> datetime | None:
    if body.expires_in_seconds is not None:
        return utcnow() + timedelta(seconds=body.expires_in_seconds)
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise InvalidInput(
            "expires_at: that time has passed",
            details=[{"field": "expires_at", "message": "in the past"}],
        )
    return body.expires_at


async def _audit(
    session: AsyncSession,
    project: Project,
    actor: Actor,
    action: AuditAction,
    target: Target,
    share: ShareLink,
) -> None:
    await audit.record(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        actor=actor,
        action=action,
        target=AuditTarget(target.noun, target.agent_id or target.tool_id or ""),
        detail={"share_id": share.id, "user_group_id": share.user_group_id},
    )


@dashboard_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Exchange a user group's token for a one-time URL of its dashboard",
    responses={403: {"description": "the token is not a user group's"}},
)
async def create_dashboard_session(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> DashboardSession:
    """Called by the embedding product's server with `Authorization: Token <user group
    token>`; the URL holds a code that opens the dashboard once, within a minute, and sets
    the iframe's cookie. The token itself never goes into a URL."""
    if principal.user_group_id is None:
        raise PermissionDenied("this needs a user group's token (POST /api/user)")
    code, expires_at = await share_repo.create_dashboard_code(
        session=session,
        user_group_id=principal.user_group_id,
        project_id=project.id,
        lifetime=timedelta(seconds=DASHBOARD_CODE_SECONDS),
    )
    return DashboardSession(
        url=public_url(request, settings, f"/dashboard/enter?code={code}"),
        expires_at=expires_at,
    )
