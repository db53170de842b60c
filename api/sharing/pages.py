"""A share link's public pages, for anyone holding the link and no token: an agent's chat
(`/share/<token>`) and a tool's run form. `/embed/<token>` is the same page made to live in
another site's iframe (the chat widget opens it). What a visitor starts is billed to the
link's project like any task or run, marked `share:<id>`, and remembered with the visitor's
cookie: a visitor sees only their own conversations and runs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from temporalio.client import Client

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.routes import tasks as task_routes
from api.schemas.tasks import MessageCreate
from api.sharing import cookies
from api.sharing.cookies import VISITOR_COOKIE, VISITOR_SECONDS, Visitor
from api.sharing.views import HERE, Options, PageRoute, conversation, count_use, page, see
from api.templates import api_budget, off_loop
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import shares as share_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import ShareLink, Task, ToolRun
from baton.domain.agents import render_with_params
from baton.domain.tasks import TaskStatus
from baton.domain.tools import ParamType, ToolParam, ToolSpec
from baton.errors import BatonError, Conflict, InvalidInput, NotFound
from baton.services import tool_runs
from baton.services.tasks import start_agent_task
from baton.templating import TemplateError, is_template

router = APIRouter(include_in_schema=False, route_class=PageRoute)
# A visitor's page lists this many of their latest conversations or runs.
RECENT = 20
PREFIXES = {"/share": False, "/embed": True}  # prefix -> frameable


@router.get("/embed/chat.js")
async def chat_widget() -> Response:
    """The chat bubble another site includes with `<script src=".../embed/chat.js"
    data-share="<share URL or token>">`."""
    return FileResponse(
        HERE / "static" / "chat.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def _opened(session: AsyncSession, token: str, request: Request) -> tuple[ShareLink, Visitor]:
    """The active link a token opens (404/410 otherwise) and who is visiting it."""
    share = await share_repo.open_share(session=session, token=token)
    return share, cookies.visitor_of(request)


def _prefix(request: Request) -> str:
    return "/embed" if request.url.path.startswith("/embed/") else "/share"


def _visitor_cookie(request: Request, visitor: Visitor) -> Callable[[Response], None]:
    def set_it(response: Response) -> None:
        cookies.set_cookie(request, response, VISITOR_COOKIE, visitor.cookie, VISITOR_SECONDS)

    return set_it


async def _form(request: Request, visitor: Visitor) -> FormData:
    form = await request.form()
    # A first visit has no cookie yet: its forms carry the CSRF of a cookie it does not hold.
    held = request.cookies.get(VISITOR_COOKIE)
    cookies.check_csrf(request, held if held == visitor.cookie else None, form.get("csrf"))
    return form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _welcome(session: AsyncSession, share: ShareLink) -> tuple[str, str]:
    """The agent's name and its welcome message (params at their defaults): all of its
    definition a visitor sees."""
    assert share.agent_id is not None
    agent = await agent_repo.get_agent(
        session=session, project_id=share.project_id, agent_id=share.agent_id
    )
    spec = agent_repo.agent_spec(agent)
    text = spec.welcome_message
    if not is_template(text):
        return spec.name, text
    defaults = {p.name: p.default for p in spec.params if p.default is not None}

    def render() -> str:
        try:
            return render_with_params(text, defaults, {}, budget=api_budget())
        except TemplateError:
            return ""

    return spec.name, await off_loop(render)


async def _tool_spec(session: AsyncSession, share: ShareLink) -> ToolSpec:
    assert share.tool_id is not None
    await tool_repo.get_tool(session=session, project_id=share.project_id, tool_id=share.tool_id)
    _, spec = await tool_repo.get_spec(session=session, tool_id=share.tool_id)
    return spec


async def share_home(token: str, request: Request, session: SessionDep) -> Response:
    return await _home(token, request, session)


async def _home(
    token: str, request: Request, session: AsyncSession, *, error: str = "", status_code: int = 200
) -> Response:
    share, visitor = await _opened(session, token, request)
    mine = await share_repo.visitor_runs(
        session=session, share_id=share.id, visitor=visitor.id, limit=RECENT
    )
    prefix = _prefix(request)
    common: dict[str, Any] = {
        "frameable": PREFIXES[prefix],
        "options": Options.of(request),
        "set_cookies": _visitor_cookie(request, visitor),
        "status_code": status_code,
        "base": f"{prefix}/{token}",
        "csrf": cookies.signer(request).csrf(visitor.cookie),
        "error": error,
    }
    if share.agent_id is not None:
        name, welcome = await _welcome(session, share)
        tasks = [t for t in [await session.get(Task, i) for i in mine] if t is not None]
        return page(
            request, "sharing_agent.html", name=name, welcome=welcome, tasks=tasks, **common
        )
    assert share.tool_id is not None
    runs = [r for r in [await session.get(ToolRun, i) for i in mine] if r is not None]
    spec = await _tool_spec(session, share)
    return page(
        request,
        "sharing_tool.html",
        name=spec.name,
        description=spec.description,
        params=spec.params,
        runs=runs,
        **common,
    )


async def start_conversation(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> Response:
    share, visitor = await _opened(session, token, request)
    form = await _form(request, visitor)
    if share.agent_id is None:
        raise NotFound("this link shares a tool: run it with its form")
    try:
        # A starting prompt's button sends itself; else the message typed.
        typed = _text(form, "prompt") or _text(form, "message")
        message = MessageCreate(message=typed).message
    except ValidationError:
        problem = "Write a message (at most 100,000 characters)."
        return await _home(token, request, session, error=problem, status_code=422)
    await count_use(request, settings, f"share:{share.id}")
    agent = await agent_repo.get_agent(
        session=session, project_id=share.project_id, agent_id=share.agent_id
    )

    async def start() -> str:
        task = await start_agent_task(
            session=session,
            temporal_client=temporal_client,
            settings=settings,
            agent=agent,
            message=message,
            source=f"share:{share.id}",
        )
        return task.id

    return await _start_for_visitor(
        token, request, session, share, visitor, start, kind="conversations"
    )


async def _start_for_visitor(
    token: str,
    request: Request,
    session: AsyncSession,
    share: ShareLink,
    visitor: Visitor,
    start: Callable[[], Awaitable[str]],
    *,
    kind: str,
) -> Response:
    """Starts what a visitor asked for (`start` returns its id): it is remembered as theirs
    and they go to its page (`<kind>/<id>`), or a refusal shows the link's page again."""
    try:
        run_id = await start()
    except BatonError as exc:
        return await _home(token, request, session, error=exc.message, status_code=exc.status_code)
    await share_repo.record_run(
        session=session, share_id=share.id, run_id=run_id, visitor=visitor.id
    )
    return see(f"{_prefix(request)}/{token}/{kind}/{run_id}{Options.of(request).query}")


async def _visitor_task(
    session: AsyncSession, share: ShareLink, visitor: Visitor, task_id: str
) -> Task:
    await share_repo.require_visitor_run(
        session=session, share_id=share.id, visitor=visitor.id, run_id=task_id
    )
    return await task_repo.get_task_by_id(session=session, task_id=task_id)


async def conversation_page(
    token: str,
    task_id: str,
    request: Request,
    session: SessionDep,
    temporal_client: TemporalDep,
    after: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> Response:
    return await _conversation(token, task_id, request, session, temporal_client, after=after)


async def _conversation(
    token: str,
    task_id: str,
    request: Request,
    session: AsyncSession,
    temporal_client: Client,
    *,
    after: int | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    share, visitor = await _opened(session, token, request)
    task = await _visitor_task(session, share, visitor, task_id)
    options = Options.of(request)
    talk = await conversation(
        session=session,
        temporal_client=temporal_client,
        task=task,
        hide_steps=options.hide_steps,
        sent_after=after,
    )
    name, welcome = await _welcome(session, share)
    prefix = _prefix(request)
    return page(
        request,
        "sharing_conversation.html",
        frameable=PREFIXES[prefix],
        options=options,
        set_cookies=_visitor_cookie(request, visitor),
        name=name,
        welcome=welcome,
        talk=talk,
        base=f"{prefix}/{token}",
        reply_url=f"{prefix}/{token}/conversations/{task.id}/messages",
        csrf=cookies.signer(request).csrf(visitor.cookie),
        error=error,
        status_code=status_code,
    )


async def send_message(
    token: str,
    task_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> Response:
    share, visitor = await _opened(session, token, request)
    form = await _form(request, visitor)
    task = await _visitor_task(session, share, visitor, task_id)
    options = Options.of(request)
    before = await conversation(
        session=session, temporal_client=temporal_client, task=task, hide_steps=options.hide_steps
    )
    back = f"{_prefix(request)}/{token}/conversations/{task.id}"
    try:
        message = MessageCreate(message=_text(form, "message")).message
        await count_use(request, settings, f"share:{share.id}")
        if TaskStatus(task.status).is_final:
            raise Conflict("this conversation has ended; start a new one")
        await task_routes.post_follow_up(temporal_client, task, message)
    except ValidationError:
        return await _conversation(
            token,
            task_id,
            request,
            session,
            temporal_client,
            error="Write a message (at most 100,000 characters).",
            status_code=422,
        )
    except (Conflict, InvalidInput) as exc:
        return await _conversation(
            token,
            task_id,
            request,
            session,
            temporal_client,
            error=exc.message,
            status_code=exc.status_code,
        )
    return see(back + options.query_with(after=len(before.lines)))


def _param_value(param: ToolParam, raw: str) -> Any:
    """A form field as the param's type; a value that does not parse is passed on as text,
    for the run's own check to refuse naming the param."""
    if param.type is ParamType.boolean:
        return raw in ("on", "true", "1")
    if raw == "" and not param.required:
        return None
    try:
        if param.type is ParamType.integer:
            return int(raw)
        if param.type is ParamType.number:
            return float(raw)
        if param.type in (ParamType.json, ParamType.list_of_text):
            return json.loads(raw)
    except ValueError:
        return raw
    return raw


async def start_run(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> Response:
    share, visitor = await _opened(session, token, request)
    form = await _form(request, visitor)
    if share.tool_id is None:
        raise NotFound("this link shares an agent: chat with it instead")
    spec = await _tool_spec(session, share)
    params = {
        p.name: value
        for p in spec.params
        if (value := _param_value(p, _text(form, p.name))) is not None
    }
    await count_use(request, settings, f"share:{share.id}")
    tool_id = share.tool_id

    async def start() -> str:
        run = await tool_runs.start_tool_run(
            session=session,
            temporal_client=temporal_client,
            settings=settings,
            project_id=share.project_id,
            tool_id=tool_id,
            params=params,
            source=f"share:{share.id}",
        )
        return run.id

    return await _start_for_visitor(token, request, session, share, visitor, start, kind="runs")


async def run_page(
    token: str, run_id: str, request: Request, session: SessionDep, temporal_client: TemporalDep
) -> Response:
    """The run's status and, once it ended, its result; never its steps (their config and
    intermediate outputs are the owner's)."""
    share, visitor = await _opened(session, token, request)
    await share_repo.require_visitor_run(
        session=session, share_id=share.id, visitor=visitor.id, run_id=run_id
    )
    run = await session.get(ToolRun, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    status, _ = await tool_runs.run_view(session=session, temporal_client=temporal_client, run=run)
    prefix = _prefix(request)
    return page(
        request,
        "sharing_run.html",
        frameable=PREFIXES[prefix],
        options=Options.of(request),
        set_cookies=_visitor_cookie(request, visitor),
        run=run,
        status=status,
        output=json.dumps(run.output, indent=2, ensure_ascii=False)
        if not isinstance(run.output, str)
        else run.output,
        base=f"{prefix}/{token}",
    )


for _prefix_path in PREFIXES:
    router.add_api_route(f"{_prefix_path}/{{token}}", share_home, methods=["GET"])
    router.add_api_route(
        f"{_prefix_path}/{{token}}/conversations", start_conversation, methods=["POST"]
    )
    router.add_api_route(
        f"{_prefix_path}/{{token}}/conversations/{{task_id}}", conversation_page, methods=["GET"]
    )
    router.add_api_route(
        f"{_prefix_path}/{{token}}/conversations/{{task_id}}/messages",
        send_message,
        methods=["POST"],
    )
    router.add_api_route(f"{_prefix_path}/{{token}}/runs", start_run, methods=["POST"])
    router.add_api_route(f"{_prefix_path}/{{token}}/runs/{{run_id}}", run_page, methods=["GET"])
