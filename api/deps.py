"""`Annotated` dependencies the routes ask for: a session, the caller, Temporal, settings, and
the knowledge routes' embedders and row changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from baton.db.repositories import accounts
from baton.db.tables import Project
from baton.domain.accounts import Principal, Role
from baton.errors import PermissionDenied, Unauthenticated
from baton.knowledge.embeddings import EmbedderFactory
from baton.services.embedding import RowChanges
from baton.services.provider_configs import project_provider_configs
from baton.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.session_factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
# "function" scope commits before the response is sent, so a client's next request sees it.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
TemporalDep = Annotated[Client, Depends(get_temporal)]


def presented_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise Unauthenticated("send 'Authorization: Token <token>' (or 'Bearer <token>')")
    return token.strip()


async def get_principal(request: Request, session: SessionDep) -> Principal:
    return await accounts.authenticate(session=session, token=presented_token(request))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(principal: Principal, role: Role) -> None:
    if principal.is_user_group:
        raise PermissionDenied("a user group token can only read and message its own tasks")
    if not principal.role.at_least(role):
        raise PermissionDenied(
            f"this needs the {role.value} role; the token has {principal.role.value}"
        )


def require_grantable(principal: Principal, granted: Role) -> None:
    """Nobody hands out more power than they hold."""
    if not principal.role.at_least(granted):
        raise PermissionDenied(
            f"a {principal.role.value} token cannot grant the {granted.value} role"
        )


def require_org_scope(principal: Principal) -> None:
    if principal.project_id is not None:
        raise PermissionDenied("this needs an organisation token; the token is scoped to a project")


async def get_project(project_id: str, session: SessionDep, principal: PrincipalDep) -> Project:
    return await accounts.get_project(session=session, principal=principal, project_id=project_id)


ProjectDep = Annotated[Project, Depends(get_project)]


def get_row_changes(request: Request) -> RowChanges:
    state = request.app.state
    return RowChanges(client=state.temporal, task_queue=state.settings.temporal_task_queue)


def get_embedders(request: Request) -> EmbedderFactory:
    """One factory per app, so the local model it holds loads once, on the first query."""
    state = request.app.state
    if getattr(state, "embedders", None) is None:
        state.embedders = EmbedderFactory(
            project_provider_configs(state.session_factory, state.settings)
        )
    embedders: EmbedderFactory = state.embedders
    return embedders


EmbeddersDep = Annotated[EmbedderFactory, Depends(get_embedders)]
RowChangesDep = Annotated[RowChanges, Depends(get_row_changes)]
