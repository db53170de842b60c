"""The tools pages: the list, a tool with a run form made from its params and its run
history, and a run with each step's output."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from api.console.core import (
    Console,
    EditorConsole,
    Form,
    FormDep,
    ViewerConsole,
    console_router,
    render,
    submit,
)
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.routes import tool_runs as tool_run_routes
from api.routes import tools as tool_routes
from api.schemas.tools import ToolRunCreate
from baton.db.paging import PageRequest
from baton.db.repositories import tool_runs as run_repo
from baton.db.repositories import tools as tool_repo
from baton.domain.tools import ParamType, ToolParam, ToolSpec
from baton.errors import InvalidInput

router = console_router()

RUNS_SHOWN = 20
# How long a run started from the form is waited for before its page is shown.
RUN_WAIT_SECONDS = 10.0


@router.get("/tools")
async def tools_page(request: Request, console: ViewerConsole, session: SessionDep) -> Response:
    tools = await tool_repo.list_tools(session=session, project_id=console.project.id)
    return render(request, "tools.html", console.state, console=console, tools=tools)


@router.get("/tools/{tool_id}")
async def tool_page(
    tool_id: str, request: Request, console: ViewerConsole, session: SessionDep
) -> Response:
    return await _tool(request, console, session, tool_id)


async def _tool(
    request: Request,
    console: Console,
    session: SessionDep,
    tool_id: str,
    *,
    values: dict[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    tool = await tool_repo.get_tool(session=session, project_id=console.project.id, tool_id=tool_id)
    _, spec = await tool_repo.get_spec(session=session, tool_id=tool.id)
    runs = await run_repo.list_runs(
        session=session,
        project_id=console.project.id,
        tool_id=tool.id,
        page=PageRequest(limit=RUNS_SHOWN),
    )
    return render(
        request,
        "tool.html",
        console.state,
        console=console,
        tool=tool,
        spec=spec,
        runs=runs.items,
        values=values or {},
        error=error,
        status_code=status_code,
    )


@router.post("/tools/{tool_id}/runs")
async def run_tool(
    tool_id: str,
    request: Request,
    console: EditorConsole,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    """Runs the tool with the form's params, through the API's run, and shows the run once
    it ends (or after a few seconds, still running)."""
    tool = await tool_repo.get_tool(session=session, project_id=console.project.id, tool_id=tool_id)
    _, spec = await tool_repo.get_spec(session=session, tool_id=tool.id)

    async def run() -> str:
        started = await tool_routes.run_tool(
            body=ToolRunCreate(
                params=params_of(form, spec), wait=True, wait_seconds=RUN_WAIT_SECONDS
            ),
            project=console.project,
            session=session,
            _=console.principal,
            tool=tool,
            temporal_client=temporal_client,
            settings=settings,
        )
        return f"/tool-runs/{started.id}"

    async def again(error: str, status_code: int) -> Response:
        values = {p.name: form[f"param.{p.name}"] for p in spec.params}
        return await _tool(
            request,
            console,
            session,
            tool.id,
            values=values,
            error=error,
            status_code=status_code,
        )

    return await submit(run, on_error=again)


def params_of(form: Form, spec: ToolSpec) -> dict[str, Any]:
    """The run's params from the form's `param.<name>` fields, each read as its type says; a
    field left empty is left out (the tool's default, or the API's "required" error)."""
    params: dict[str, Any] = {}
    for param in spec.params:
        raw = form[f"param.{param.name}"]
        if param.type is ParamType.boolean:
            params[param.name] = raw == "on"
        elif raw:
            params[param.name] = _typed(param, raw)
    return params


def _typed(param: ToolParam, raw: str) -> Any:
    try:
        if param.type is ParamType.integer:
            return int(raw)
        if param.type is ParamType.number:
            return float(raw)
        if param.type is ParamType.json:
            return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"params.{param.name}: not a {param.type.value} ({raw!r})") from exc
    if param.type is ParamType.list_of_text:
        return [line.strip() for line in raw.splitlines() if line.strip()]
    return raw


@router.get("/tool-runs/{run_id}")
async def run_page(
    run_id: str,
    request: Request,
    console: ViewerConsole,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
) -> Response:
    run = await tool_run_routes.get_run(
        run_id=run_id,
        project=console.project,
        session=session,
        _=console.principal,
        settings=settings,
        temporal_client=temporal_client,
    )
    tool = await tool_repo.get_tool(
        session=session, project_id=console.project.id, tool_id=run.tool_id
    )
    return render(
        request,
        "tool_run.html",
        console.state,
        console=console,
        run=run,
        tool=tool,
        working=not run.status.is_final,
    )
