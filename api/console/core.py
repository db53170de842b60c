"""What every console page shares: the route class that turns a failure into an HTML page,
the session cookie, the signed-in member and their project (`ConsoleDep`, and the role
forms `ViewerConsole` / `EditorConsole`), the CSRF-checked form, rendering, and `submit`,
the one shape of every form action (call the service, redirect, or show the page again
saying what went wrong)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.console.sessions import COOKIE, SESSION_SECONDS, ConsoleSession, SessionSigner, new_session
from api.deps import SessionDep, require_role
from api.rate_limits import count_request
from baton.db.repositories import accounts
from baton.db.tables import Project
from baton.domain.accounts import Principal, Role
from baton.errors import BatonError, NotFound, PermissionDenied, Unauthenticated
from baton.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# Not shown in a frame by another site: the pages hold forms that act for the member.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


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


def console_router() -> APIRouter:
    """The router of one group of pages: out of the OpenAPI schema, failing as HTML."""
    return APIRouter(include_in_schema=False, route_class=ConsoleRoute)


class SignedOut(Exception):
    """No valid session, or its token was revoked or expired: back to the sign-in page."""


class NoProject(Exception):
    """Signed in with an organisation token, but no project picked yet (or it is gone)."""


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


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")


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
    await count_request(request, principal, holding=session)
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


class ConsoleRole:
    """The member's console once they hold `role`, as the API's `RequireRole` checks it."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(self, console: ConsoleDep) -> Console:
        require_role(console.principal, self.role)
        return console


ViewerConsole = Annotated[Console, Depends(ConsoleRole(Role.viewer))]
EditorConsole = Annotated[Console, Depends(ConsoleRole(Role.editor))]


# ---------------------------------------------------------------------------------------------
# Forms


@dataclass(frozen=True)
class Form:
    """A posted form whose CSRF field matched the session's."""

    data: FormData

    def __getitem__(self, name: str) -> str:
        """The field's text, stripped; "" when it is missing or a file."""
        value = self.data.get(name)
        return value.strip() if isinstance(value, str) else ""

    def all(self, name: str) -> list[str]:
        """Every value of a repeated field (checkboxes), stripped, empty ones left out."""
        return [v.strip() for v in self.data.getlist(name) if isinstance(v, str) and v.strip()]


async def checked_form(request: Request) -> Form:
    """The posted form, once its CSRF field matches the session's: every POST asks for it."""
    form = await request.form()
    state = read_session(request)
    sent = form.get("csrf")
    if state is None or not isinstance(sent, str) or not hmac.compare_digest(sent, state.csrf):
        raise PermissionDenied("the form's CSRF token is missing or wrong; reload the page")
    return Form(form)


FormDep = Annotated[Form, Depends(checked_form)]

Failure = BatonError | ValidationError
# Shows the page again after a failed action: given the problem's text and HTTP status.
OnError = Callable[[str, int], Awaitable[Response]]


async def submit(action: Callable[[], Awaitable[str]], *, on_error: OnError) -> Response:
    """A form action: `action` calls the service and returns where to go next (303), or it
    fails, and `on_error` shows the page again with what the API would have said."""
    try:
        url = await action()
    except (BatonError, ValidationError) as exc:
        return await on_error(error_text(exc), error_status(exc))
    return see(url)


def back_to(url: str) -> OnError:
    """For a page that shows `?error=`: redirect there with the problem's text."""

    async def redirect(problem: str, status_code: int) -> Response:
        return see(with_query(url, error=problem))

    return redirect


def with_query(url: str, **query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(query)}"


def error_text(exc: Failure) -> str:
    if isinstance(exc, BatonError):
        return exc.message
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
    )


def error_status(exc: Failure) -> int:
    return exc.status_code if isinstance(exc, BatonError) else 422


# ---------------------------------------------------------------------------------------------
# Pages


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
