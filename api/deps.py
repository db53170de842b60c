"""`Annotated` dependencies the routes ask for: a session, the caller, the role it needs and
the actor the audit log names, Temporal, settings, the resources a path names (project,
agent, tool, knowledge set, workforce), a page request, and the knowledge routes' embedders
and row changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.rate_limits import count_request
from baton.db.paging import PageRequest
from baton.db.repositories import accounts
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import tools as tool_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Agent, KnowledgeSet, Project, Tool, Workforce
from baton.domain.accounts import Principal, Role
from baton.domain.audit import Actor
from baton.domain.credits import PlanBook
from baton.errors import PermissionDenied, Unauthenticated
from baton.knowledge.advanced import ModelAccess
from baton.knowledge.embeddings import EmbedderFactory
from baton.knowledge.rerank import Rerankers
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


def get_plans(request: Request) -> PlanBook:
    """The installation's plans, read once when the app starts."""
    plans: PlanBook = request.app.state.plans
    return plans


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
# "function" scope commits before the response is sent, so a client's next request sees it.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
TemporalDep = Annotated[Client, Depends(get_temporal)]
PlansDep = Annotated[PlanBook, Depends(get_plans)]


def presented_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token.strip():
        raise Unauthenticated("send 'Authorization: Token <token>' (or 'Bearer <token>')")
    return token.strip()


# Declares the scheme in the OpenAPI document, so /docs has an Authorize button; the header is
# read by `presented_token`, which also takes the `Token <token>` form.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token: 'Authorization: Bearer <token>' (or 'Token <token>')",
)


async def get_principal(
    request: Request,
    session: SessionDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    principal = await accounts.authenticate(session=session, token=presented_token(request))
    await count_request(request, principal, holding=session)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_actor(request: Request, principal: PrincipalDep) -> Actor:
    """The caller as the audit log names it, with the address the request came from (behind
    a proxy, the proxy's: a forwarded header is whatever the client chose to send)."""
    return Actor.of(principal, client=request.client.host if request.client else None)


ActorDep = Annotated[Actor, Depends(get_actor)]


def require_role(principal: Principal, role: Role) -> None:
    if principal.is_user_group:
        raise PermissionDenied("a user group token can only read and message its own tasks")
    if not principal.role.at_least(role):
        raise PermissionDenied(
            f"this needs the {role.value} role; the token has {principal.role.value}"
        )


class RequireRole:
    """The caller, once it holds `role`: `Depends(RequireRole(Role.editor))` on a route or a
    router, or one of the `Annotated` forms below as a route's parameter. A user group token
    holds no role; `user_group=True` lets one through anyway (it reaches only its own tasks).
    `org_scope=True` also refuses a token scoped to one project."""

    def __init__(self, role: Role, *, user_group: bool = False, org_scope: bool = False) -> None:
        self.role = role
        self.user_group = user_group
        self.org_scope = org_scope

    def __call__(self, principal: PrincipalDep) -> Principal:
        if not (self.user_group and principal.is_user_group):
            require_role(principal, self.role)
        if self.org_scope:
            require_org_scope(principal)
        return principal


# A project's routers look the project up first (`dependencies=[Depends(get_project)]`), so
# another organisation's project stays a 404 whatever the token's role; then the role, then
# the resource the path names (`AgentDep`...), so a caller without the role learns nothing.
Viewer = Annotated[Principal, Depends(RequireRole(Role.viewer))]
Editor = Annotated[Principal, Depends(RequireRole(Role.editor))]
Admin = Annotated[Principal, Depends(RequireRole(Role.admin))]
# Editors, and a user group token on its own tasks (the task lookup decides which it sees).
TaskWriter = Annotated[Principal, Depends(RequireRole(Role.editor, user_group=True))]
OrgViewer = Annotated[Principal, Depends(RequireRole(Role.viewer, org_scope=True))]
OrgAdmin = Annotated[Principal, Depends(RequireRole(Role.admin, org_scope=True))]


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


async def get_agent(agent_id: str, project: ProjectDep, session: SessionDep) -> Agent:
    return await agent_repo.get_agent(session=session, project_id=project.id, agent_id=agent_id)


async def get_tool(tool_id: str, project: ProjectDep, session: SessionDep) -> Tool:
    return await tool_repo.get_tool(session=session, project_id=project.id, tool_id=tool_id)


async def get_knowledge_set(set_id: str, project: ProjectDep, session: SessionDep) -> KnowledgeSet:
    return await set_repo.get_set(session=session, project_id=project.id, set_id=set_id)


async def get_workforce(workforce_id: str, project: ProjectDep, session: SessionDep) -> Workforce:
    return await workforce_repo.get_workforce(
        session=session, project_id=project.id, workforce_id=workforce_id
    )


AgentDep = Annotated[Agent, Depends(get_agent)]
ToolDep = Annotated[Tool, Depends(get_tool)]
KnowledgeSetDep = Annotated[KnowledgeSet, Depends(get_knowledge_set)]
WorkforceDep = Annotated[Workforce, Depends(get_workforce)]


def page_dependency(*, default: int, maximum: int) -> Any:
    """`?limit=&cursor=` of a list endpoint; `cursor` is the `next_cursor` of the page before."""

    # The bounds live in the defaults: an annotation naming `maximum` would be a string here
    # (postponed annotations) that FastAPI cannot resolve outside this function.
    def page(
        limit: int = Query(default, ge=1, le=maximum, description=f"At most {maximum} items"),
        cursor: str | None = Query(
            None, max_length=1000, description="The `next_cursor` of the page before"
        ),
    ) -> PageRequest:
        return PageRequest(limit=limit, cursor=cursor)

    return Depends(page)


PageDep = Annotated[PageRequest, page_dependency(default=50, maximum=200)]


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


def get_model_access(request: Request) -> ModelAccess:
    """How a request's own model calls (advanced knowledge search) reach and pay for models."""
    state = request.app.state
    if getattr(state, "model_access", None) is None:
        state.model_access = ModelAccess(
            provider_configs=project_provider_configs(state.session_factory, state.settings),
            plans=state.plans,
            sessions=state.session_factory,
        )
    access: ModelAccess = state.model_access
    return access


EmbeddersDep = Annotated[EmbedderFactory, Depends(get_embedders)]
ModelAccessDep = Annotated[ModelAccess, Depends(get_model_access)]


def get_rerankers(request: Request) -> Rerankers:
    """One per app, beside the embedders: the local reranker shares their loaded model."""
    state = request.app.state
    if getattr(state, "rerankers", None) is None:
        state.rerankers = Rerankers(project_provider_configs(state.session_factory, state.settings))
    rerankers: Rerankers = state.rerankers
    return rerankers


RerankersDep = Annotated[Rerankers, Depends(get_rerankers)]
RowChangesDep = Annotated[RowChanges, Depends(get_row_changes)]
