"""The user-group dashboard: the page an embedding product shows its customer in an iframe.
Its server exchanges the group's token for a one-time URL (api/routes/shares.py); opening it
spends the code and sets a signed cookie naming the group and project. The dashboard lists
that group's tasks only, and lets it chat with the agents shared with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.routes import tasks as task_routes
from api.schemas.tasks import MessageCreate
from api.sharing import cookies
from api.sharing.cookies import DASHBOARD_COOKIE, DASHBOARD_SECONDS, DashboardVisit
from api.sharing.views import Options, PageRoute, conversation, count_use, page, see
from baton.db.paging import PageRequest
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import shares as share_repo
from baton.db.repositories import tasks as task_repo
from baton.db.tables import Project, ShareLink, UserGroup
from baton.domain.accounts import Principal, PrincipalKind, Role
from baton.domain.tasks import TaskStatus
from baton.errors import BatonError, Conflict, NotFound, PermissionDenied, Unauthenticated
from baton.services.tasks import start_agent_task

router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=PageRoute)
TASKS_SHOWN = 50


@dataclass(frozen=True)
class Dashboard:
    visit: DashboardVisit
    group: UserGroup
    project: Project

    @property
    def principal(self) -> Principal:
        """The group as the task lookups know it: it reaches its own tasks only."""
        return Principal(
            kind=PrincipalKind.user_group,
            org_id=self.group.org_id,
            role=Role.viewer,
            user_group_id=self.group.id,
        )


async def _dashboard(request: Request, session: AsyncSession) -> Dashboard:
    visit = cookies.dashboard_visit(request)
    if visit is None:
        raise Unauthenticated("this dashboard session has ended; reopen it from the product")
    group = await session.get(UserGroup, visit.user_group_id)
    project = await session.get(Project, visit.project_id)
    if group is None or project is None or project.org_id != group.org_id:
        raise Unauthenticated("this dashboard session has ended; reopen it from the product")
    return Dashboard(visit=visit, group=group, project=project)


@router.get("/enter")
async def enter(code: str, request: Request, session: SessionDep) -> Response:
    """Spends the one-time code and sets the dashboard's cookie."""
    spent = await share_repo.use_dashboard_code(session=session, code=code)
    response = see("/dashboard")
    value = cookies.dashboard_cookie(request, spent.user_group_id, spent.project_id)
    cookies.set_cookie(request, response, DASHBOARD_COOKIE, value, DASHBOARD_SECONDS)
    return response


async def _agents(session: AsyncSession, dashboard: Dashboard) -> list[tuple[ShareLink, str]]:
    shares = await share_repo.group_shares(
        session=session, project_id=dashboard.project.id, user_group_id=dashboard.group.id
    )
    named = []
    for share in shares:
        assert share.agent_id is not None
        agent = await agent_repo.get_agent(
            session=session, project_id=share.project_id, agent_id=share.agent_id
        )
        named.append((share, agent.name))
    return named


@router.get("")
async def home(request: Request, session: SessionDep) -> Response:
    return await _home(request, session)


async def _home(
    request: Request, session: AsyncSession, *, error: str = "", status_code: int = 200
) -> Response:
    dashboard = await _dashboard(request, session)
    tasks = await task_repo.list_tasks(
        session=session,
        principal=dashboard.principal,
        project_id=dashboard.project.id,
        agent_id=None,
        workforce_id=None,
        status=None,
        page=PageRequest(limit=TASKS_SHOWN),
    )
    agents = await _agents(session, dashboard)
    return page(
        request,
        "sharing_dashboard.html",
        frameable=True,
        options=Options(),
        group=dashboard.group,
        tasks=tasks.items,
        agents=agents,
        agent_names={share.agent_id: name for share, name in agents},
        csrf=cookies.signer(request).csrf(dashboard.visit.cookie),
        error=error,
        status_code=status_code,
    )


@router.post("/chat")
async def start_chat(
    request: Request, session: SessionDep, settings: SettingsDep, temporal_client: TemporalDep
) -> Response:
    dashboard = await _dashboard(request, session)
    form = await request.form()
    cookies.check_csrf(request, dashboard.visit.cookie, form.get("csrf"))
    share_id, text = form.get("share_id"), form.get("message")
    shares = {share.id: share for share, _ in await _agents(session, dashboard)}
    share = shares.get(share_id) if isinstance(share_id, str) else None
    if share is None or share.agent_id is None:
        raise NotFound("that agent is not shared with you")
    try:
        message = MessageCreate(message=text.strip() if isinstance(text, str) else "").message
        await count_use(request, settings, f"dashboard:{dashboard.group.id}")
        agent = await agent_repo.get_agent(
            session=session, project_id=share.project_id, agent_id=share.agent_id
        )
        task = await start_agent_task(
            session=session,
            temporal_client=temporal_client,
            settings=settings,
            agent=agent,
            message=message,
            user_group_id=dashboard.group.id,
            source=f"share:{share.id}",
        )
    except ValidationError:
        problem = "Write a message (at most 100,000 characters)."
        return await _home(request, session, error=problem, status_code=422)
    except BatonError as exc:
        return await _home(request, session, error=exc.message, status_code=exc.status_code)
    return see(f"/dashboard/tasks/{task.id}")


@router.get("/tasks/{task_id}")
async def task_page(
    task_id: str,
    request: Request,
    session: SessionDep,
    temporal_client: TemporalDep,
    after: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> Response:
    return await _task(task_id, request, session, temporal_client, after=after)


async def _task(
    task_id: str,
    request: Request,
    session: AsyncSession,
    temporal_client: Client,
    *,
    after: int | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    dashboard = await _dashboard(request, session)
    task = await task_repo.get_task(
        session=session,
        principal=dashboard.principal,
        project_id=dashboard.project.id,
        task_id=task_id,
    )
    talk = await conversation(
        session=session,
        temporal_client=temporal_client,
        task=task,
        hide_steps=False,
        sent_after=after,
    )
    return page(
        request,
        "sharing_dashboard_task.html",
        frameable=True,
        options=Options(),
        group=dashboard.group,
        talk=talk,
        reply_url=f"/dashboard/tasks/{task.id}/messages",
        csrf=cookies.signer(request).csrf(dashboard.visit.cookie),
        error=error,
        status_code=status_code,
    )


@router.post("/tasks/{task_id}/messages")
async def reply(
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> Response:
    dashboard = await _dashboard(request, session)
    form = await request.form()
    cookies.check_csrf(request, dashboard.visit.cookie, form.get("csrf"))
    task = await task_repo.get_task(
        session=session,
        principal=dashboard.principal,
        project_id=dashboard.project.id,
        task_id=task_id,
    )
    before = await conversation(
        session=session, temporal_client=temporal_client, task=task, hide_steps=False
    )
    text = form.get("message")
    try:
        message = MessageCreate(message=text.strip() if isinstance(text, str) else "").message
        await count_use(request, settings, f"dashboard:{dashboard.group.id}")
        if TaskStatus(task.status).is_final:
            raise Conflict("this conversation has ended; start a new one")
        await task_routes.post_follow_up(temporal_client, task, message)
    except ValidationError:
        problem = "Write a message (at most 100,000 characters)."
        return await _task(
            task_id, request, session, temporal_client, error=problem, status_code=422
        )
    except (Conflict, PermissionDenied) as exc:
        return await _task(
            task_id, request, session, temporal_client, error=exc.message, status_code=409
        )
    return see(f"/dashboard/tasks/{task.id}?after={len(before.lines)}")
