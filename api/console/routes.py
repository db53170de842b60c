"""The console's pages. Each asks for the signed-in member (`ConsoleDep`), reads through the
repositories, and changes things through the very route handlers the JSON API runs, so a
form checks and does exactly what the matching API call does. None is in the OpenAPI schema."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.console.sessions import COOKIE, SESSION_SECONDS, ConsoleSession, SessionSigner, new_session
from api.deps import SessionDep, SettingsDep, TemporalDep, require_role
from api.rate_limits import count_request
from api.routes import agents as agent_routes
from api.routes import tasks as task_routes
from api.schemas.agents import AgentCreate
from api.schemas.tasks import ApprovalDecision, MessageCreate, TaskCreate
from baton.db.paging import PageRequest
from baton.db.repositories import accounts
from baton.db.repositories import agents as agent_repo
from baton.db.tables import Project
from baton.domain.accounts import Principal, Role
from baton.domain.tasks import TaskStatus
from baton.errors import BatonError, NotFound, PermissionDenied, Unauthenticated
from baton.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


class ConsoleRoute(APIRoute):
    """A console page that fails (a task not found, a form without its CSRF token) answers
    with an HTML page naming the problem, with the same 4xx the API would give, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except BatonError as exc:
                return error_page(request, exc)

        return handle


router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

# The inbox's tabs: which status each shows (None: every status).
TABS: dict[str, TaskStatus | None] = {
    "approvals": TaskStatus.waiting_approval,
    "errors": TaskStatus.failed,
    "all": None,
}
# A task page reloads itself while the agent works (streaming comes in a later slice).
WORKING = {TaskStatus.queued, TaskStatus.running}
INBOX_PAGE = 50
# Not shown in a frame by another site: the pages hold forms that act for the member.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


class SignedOut(Exception):
    """No valid session, or its token was revoked or expired: back to the sign-in page."""


class NoProject(Exception):
    """Signed in with an organisation token, but no project picked yet (or it is gone)."""


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignedOut, _to_sign_in)
    app.add_exception_handler(NoProject, _to_projects)


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
    return response


async def _to_projects(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/projects", status_code=303)


# ---------------------------------------------------------------------------------------------
# The session


def _signer(request: Request) -> SessionSigner:
    """Made on first use: the secret key is read when the app starts, not when it is built."""
    state = request.app.state
    if getattr(state, "console_signer", None) is None:
        settings: Settings = state.settings
        state.console_signer = SessionSigner(settings.require_secret_key())
    signer: SessionSigner = state.console_signer
    return signer


def read_session(request: Request) -> ConsoleSession | None:
    value = request.cookies.get(COOKIE)
    return _signer(request).load(value) if value else None


def set_session(request: Request, response: Response, state: ConsoleSession) -> None:
    response.set_cookie(
        COOKIE,
        _signer(request).dump(state),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


@dataclass
class Member:
    """A signed-in person: the session and the principal its token stands for."""

    state: ConsoleSession
    principal: Principal


@dataclass
class Console(Member):
    project: Project

    def can(self, role: str) -> bool:
        """For the templates: whether to show a form the member's role may use."""
        return not self.principal.is_user_group and self.principal.role.at_least(Role(role))


async def get_member(request: Request, session: SessionDep) -> Member:
    state = read_session(request)
    if state is None or not state.signed_in:
        raise SignedOut
    try:
        principal = await accounts.authenticate_token_id(session=session, token_id=state.token_id)
    except Unauthenticated as exc:
        raise SignedOut from exc
    await count_request(request, principal)
    return Member(state=state, principal=principal)


MemberDep = Annotated[Member, Depends(get_member)]


async def get_console(member: MemberDep, session: SessionDep) -> Console:
    if not member.state.project_id:
        raise NoProject
    try:
        project = await accounts.get_project(
            session=session, principal=member.principal, project_id=member.state.project_id
        )
    except NotFound as exc:
        raise NoProject from exc
    return Console(state=member.state, principal=member.principal, project=project)


ConsoleDep = Annotated[Console, Depends(get_console)]


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF field matches the session's: every POST asks for it."""
    form = await request.form()
    state = read_session(request)
    sent = form.get("csrf")
    if state is None or not isinstance(sent, str) or not hmac.compare_digest(sent, state.csrf):
        raise PermissionDenied("the form's CSRF token is missing or wrong; reload the page")
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def render(
    request: Request,
    name: str,
    state: ConsoleSession,
    *,
    console: Console | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    return templates.TemplateResponse(
        request,
        name,
        {"csrf": state.csrf, "console": console, **context},
        status_code=status_code,
        headers=NOT_FRAMED,
    )


def error_page(request: Request, exc: BatonError) -> Response:
    state = read_session(request) or new_session()
    return render(
        request,
        "error.html",
        state,
        problem=exc.message,
        code=exc.status_code,
        status_code=exc.status_code,
    )


def see(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def error_text(exc: BatonError | ValidationError) -> str:
    if isinstance(exc, BatonError):
        return exc.message
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
    )


def error_status(exc: BatonError | ValidationError) -> int:
    return exc.status_code if isinstance(exc, BatonError) else 422


# ---------------------------------------------------------------------------------------------
# Signing in and out, picking a project


@router.get("/")
async def home(console: ConsoleDep) -> Response:
    return see("/agents")


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    state = read_session(request) or new_session()
    response = render(request, "sign_in.html", state)
    set_session(request, response, state)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Takes the token once and keeps only its id in the session: the page never shows it
    and no URL carries it."""
    state = read_session(request) or new_session()
    try:
        principal = await accounts.authenticate(session=session, token=field(form, "token"))
        if principal.is_user_group or principal.token_id is None:
            raise PermissionDenied("a user group token cannot sign in to the console")
    except (Unauthenticated, PermissionDenied) as exc:
        return render(
            request,
            "sign_in.html",
            state,
            error="That token is not valid." if isinstance(exc, Unauthenticated) else exc.message,
            status_code=exc.status_code,
        )
    project_id = principal.project_id or ""
    if not project_id:
        projects = await accounts.list_projects(session=session, principal=principal)
        if len(projects.items) == 1:
            project_id = projects.items[0].id
    signed_in = state.with_token(principal.token_id, project_id)
    response = see("/agents" if project_id else "/projects")
    set_session(request, response, signed_in)
    return response


@router.post("/sign-out")
async def sign_out(form: FormDep) -> Response:
    response = see("/sign-in")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("/projects")
async def projects_page(request: Request, member: MemberDep, session: SessionDep) -> Response:
    projects = await accounts.list_projects(session=session, principal=member.principal)
    return render(
        request,
        "projects.html",
        member.state,
        projects=projects.items,
        current=member.state.project_id,
    )


@router.post("/projects")
async def pick_project(
    request: Request, member: MemberDep, session: SessionDep, form: FormDep
) -> Response:
    project = await accounts.get_project(
        session=session, principal=member.principal, project_id=field(form, "project_id")
    )
    response = see("/agents")
    set_session(request, response, member.state.with_project(project.id))
    return response


# ---------------------------------------------------------------------------------------------
# Agents


@router.get("/agents")
async def agents_page(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    return await _agents(request, console, session)


async def _agents(
    request: Request,
    console: Console,
    session: SessionDep,
    *,
    error: str = "",
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    require_role(console.principal, Role.viewer)
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    return render(
        request,
        "agents.html",
        console.state,
        console=console,
        agents=agents.items,
        error=error,
        values=values or {"model": "scripted:echo"},
        status_code=status_code,
    )


@router.post("/agents")
async def create_agent(
    request: Request, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    require_role(console.principal, Role.editor)
    values = {name: field(form, name) for name in ("name", "model", "system_prompt")}
    try:
        body = AgentCreate.model_validate(values)
        agent = await agent_routes.create_agent(
            body=body, project=console.project, session=session, _=console.principal
        )
    except (BatonError, ValidationError) as exc:
        return await _agents(
            request,
            console,
            session,
            error=error_text(exc),
            values=values,
            status_code=error_status(exc),
        )
    return see(f"/agents/{agent.id}")


@router.get("/agents/{agent_id}")
async def agent_page(
    agent_id: str, request: Request, console: ConsoleDep, session: SessionDep
) -> Response:
    require_role(console.principal, Role.viewer)
    agent = await agent_repo.get_agent(
        session=session, project_id=console.project.id, agent_id=agent_id
    )
    versions = await agent_repo.list_versions(session=session, agent_id=agent.id)
    return render(
        request,
        "agent.html",
        console.state,
        console=console,
        agent=agent,
        versions=list(reversed(versions.items)),
    )


# ---------------------------------------------------------------------------------------------
# Tasks and chat


@router.get("/tasks")
async def inbox(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    settings: SettingsDep,
    tab: str = "approvals",
    agent_id: str = "",
    status: str = "",
    cursor: str = "",
) -> Response:
    require_role(console.principal, Role.viewer)
    if tab not in TABS:
        tab = "approvals"
    chosen = TABS[tab] or _status(status)
    page = await task_routes.list_tasks(
        project=console.project,
        session=session,
        principal=console.principal,
        settings=settings,
        page=PageRequest(limit=INBOX_PAGE, cursor=cursor or None),
        agent_id=agent_id or None,
        status=chosen,
    )
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    return render(
        request,
        "tasks.html",
        console.state,
        console=console,
        tab=tab,
        tabs=list(TABS),
        tasks=page.items,
        next_cursor=page.next_cursor,
        agents=agents.items,
        agent_names={a.id: a.name for a in agents.items},
        agent_id=agent_id,
        status=status,
        statuses=[s.value for s in TaskStatus],
    )


def _status(value: str) -> TaskStatus | None:
    try:
        return TaskStatus(value) if value else None
    except ValueError:
        return None


@router.get("/tasks/{task_id}")
async def task_page(
    task_id: str,
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    error: str = "",
) -> Response:
    require_role(console.principal, Role.viewer)
    task = await task_routes.get_task(
        task_id=task_id,
        project=console.project,
        session=session,
        principal=console.principal,
        settings=settings,
        temporal_client=temporal_client,
    )
    return render(
        request,
        "task.html",
        console.state,
        console=console,
        task=task,
        refresh=task.status in WORKING,
        final=task.status.is_final,
        error=error,
    )


@router.post("/tasks/{task_id}/approvals/{call_id}")
async def decide(
    task_id: str,
    call_id: str,
    console: ConsoleDep,
    session: SessionDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    require_role(console.principal, Role.editor)
    try:
        body = ApprovalDecision(
            approve=field(form, "decision") == "approve", reason=field(form, "reason")
        )
        await task_routes.decide(
            task_id=task_id,
            call_id=call_id,
            body=body,
            project=console.project,
            session=session,
            principal=console.principal,
            temporal_client=temporal_client,
        )
    except (BatonError, ValidationError) as exc:
        return back_to_task(task_id, exc)
    return see(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/messages")
async def send_message(
    task_id: str,
    console: ConsoleDep,
    session: SessionDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    require_role(console.principal, Role.editor)
    try:
        await task_routes.send_message(
            task_id=task_id,
            body=MessageCreate(message=field(form, "message")),
            project=console.project,
            session=session,
            principal=console.principal,
            temporal_client=temporal_client,
        )
    except (BatonError, ValidationError) as exc:
        return back_to_task(task_id, exc)
    return see(f"/tasks/{task_id}")


def back_to_task(task_id: str, exc: BatonError | ValidationError) -> Response:
    """The task page again, saying what went wrong (a task the member cannot see is a 404
    there)."""
    return see(f"/tasks/{task_id}?{urlencode({'error': error_text(exc)})}")


@router.get("/chat")
async def chat_page(
    request: Request, console: ConsoleDep, session: SessionDep, agent_id: str = ""
) -> Response:
    return await _chat(request, console, session, agent_id=agent_id)


async def _chat(
    request: Request,
    console: Console,
    session: SessionDep,
    *,
    agent_id: str = "",
    message: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    require_role(console.principal, Role.viewer)
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    return render(
        request,
        "chat.html",
        console.state,
        console=console,
        agents=agents.items,
        agent_id=agent_id,
        message=message,
        error=error,
        status_code=status_code,
    )


@router.post("/chat")
async def start_chat(
    request: Request,
    console: ConsoleDep,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    """Starts a task with the agent; its page is the conversation."""
    require_role(console.principal, Role.editor)
    agent_id, message = field(form, "agent_id"), field(form, "message")
    try:
        agent = await agent_repo.get_agent(
            session=session, project_id=console.project.id, agent_id=agent_id
        )
        created = await agent_routes.start_task(
            body=TaskCreate(message=message),
            project=console.project,
            session=session,
            _=console.principal,
            agent=agent,
            temporal_client=temporal_client,
            settings=settings,
        )
    except (BatonError, ValidationError) as exc:
        return await _chat(
            request,
            console,
            session,
            agent_id=agent_id,
            message=message,
            error=error_text(exc),
            status_code=error_status(exc),
        )
    return see(f"/tasks/{created.id}")
