"""Signing in and out, and picking a project."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from api.console.core import (
    ConsoleDep,
    FormDep,
    MemberDep,
    clear_session,
    console_router,
    read_session,
    render,
    see,
    set_session,
)
from api.console.sessions import new_session
from api.deps import SessionDep
from baton.db.repositories import accounts
from baton.errors import PermissionDenied, Unauthenticated

router = console_router()


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
        principal = await accounts.authenticate(session=session, token=form["token"])
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
    clear_session(response)
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
        session=session, principal=member.principal, project_id=form["project_id"]
    )
    response = see("/agents")
    set_session(request, response, member.state.with_project(project.id))
    return response
