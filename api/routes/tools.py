"""Tools: definitions with versions, runs, export, import and clone."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import ValidationError

from api.deps import (
    ActorDep,
    Editor,
    PageDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    ToolDep,
    Viewer,
    get_project,
)
from api.limits import bounded_definition
from api.portable import (
    CloneRequest,
    Format,
    clone,
    document_response,
    import_document,
    read_import,
)
from api.schemas.paging import Page
from api.schemas.tools import ToolPublic, ToolRunCreate, ToolRunPublic, ToolVersionPublic
from baton.db.repositories import tools as tool_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Tool
from baton.domain.tools import ToolSpec
from baton.errors import Conflict, InvalidInput
from baton.services import portable
from baton.services.tool_runs import check_before_save, run_view, start_tool_run, wait_for_run

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/tools",
    tags=["tools"],
    dependencies=[Depends(get_project)],
)


@router.get("")
async def list_tools(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[ToolPublic]:
    tools = await tool_repo.current_specs(session=session, project_id=project.id, page=page)
    return Page[ToolPublic].of(tools, lambda pair: ToolPublic.of(*pair))


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[Depends(bounded_definition)])
async def create_tool(
    body: ToolSpec, project: ProjectDep, session: SessionDep, _: Editor
) -> ToolPublic:
    await check_before_save(session=session, project_id=project.id, spec=body)
    tool = await tool_repo.create_tool(session=session, project_id=project.id, spec=body)
    return ToolPublic.of(tool, body)


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_tool(
    request: Request, project: ProjectDep, session: SessionDep, _: Editor, actor: ActorDep
) -> ToolPublic:
    """A tool exported by `GET .../tools/{id}/export`, as JSON or YAML (`Content-Type:
    application/yaml`): the tools it calls are this project's of the same names, or created
    from the document. A bare definition (an export from before documents had a `kind`) is
    taken too."""
    data = await read_import(request)
    if portable.is_document(data):
        tool = await import_document(
            session=session, project=project, actor=actor, data=data, into=Tool
        )
        _version, spec = await tool_repo.get_spec(session=session, tool_id=tool.id)
        return ToolPublic.of(tool, spec)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _EXPORT_ONLY}
    try:
        spec = ToolSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            "the imported tool is not valid",
            details=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from exc
    await check_before_save(session=session, project_id=project.id, spec=spec)
    tool = await tool_repo.create_tool(session=session, project_id=project.id, spec=spec)
    return ToolPublic.of(tool, spec)


_EXPORT_ONLY = {"id", "project_id", "version", "parameters_schema", "created_at", "updated_at"}


@router.get("/{tool_id}")
async def get_tool(session: SessionDep, _: Viewer, tool: ToolDep) -> ToolPublic:
    _version, spec = await tool_repo.get_spec(session=session, tool_id=tool.id)
    return ToolPublic.of(tool, spec)


@router.put("/{tool_id}", dependencies=[Depends(bounded_definition)])
async def update_tool(
    body: ToolSpec, project: ProjectDep, session: SessionDep, _: Editor, tool: ToolDep
) -> ToolPublic:
    """Saves a new version; runs already started keep the version they started with."""
    await check_before_save(session=session, project_id=project.id, spec=body, tool_id=tool.id)
    tool = await tool_repo.update_tool(
        session=session, project_id=project.id, tool_id=tool.id, spec=body
    )
    return ToolPublic.of(tool, body)


@router.delete("/{tool_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tool(project: ProjectDep, session: SessionDep, _: Editor, tool: ToolDep) -> None:
    """Refused while a workforce runs it as a node, or another tool calls it."""
    users = await workforce_repo.users_of(session=session, project_id=project.id, tool_id=tool.id)
    if users:
        raise Conflict(
            f"tool {tool.name!r} is a node of {', '.join(users)}; change those first",
            details={"used_by": users},
        )
    await tool_repo.delete_tool(session=session, project_id=project.id, tool_id=tool.id)


@router.get("/{tool_id}/versions")
async def list_versions(
    session: SessionDep, _: Viewer, tool: ToolDep, page: PageDep
) -> Page[ToolVersionPublic]:
    rows = await tool_repo.list_versions(session=session, tool_id=tool.id, page=page)
    return Page[ToolVersionPublic].of(
        rows,
        lambda r: ToolVersionPublic(
            version=r.version, created_at=r.created_at, spec=ToolSpec.model_validate(r.spec)
        ),
    )


@router.get("/{tool_id}/export")
async def export_tool(
    session: SessionDep, _: Viewer, tool: ToolDep, format: Format = "json"
) -> Response:
    """A portable document: the definition, and the tools it calls, all by name."""
    return document_response(await portable.export_tool(session=session, tool=tool), format)


@router.post("/{tool_id}/clone", status_code=status.HTTP_201_CREATED)
async def clone_tool(
    project: ProjectDep,
    session: SessionDep,
    principal: Editor,
    actor: ActorDep,
    tool: ToolDep,
    body: CloneRequest | None = None,
) -> ToolPublic:
    """A new tool like this one, here ("<name> (copy)") or in another project of the
    organisation (`{"project_id"}`), where the tools it calls are that project's of the same
    names or cloned along with it."""
    copy = await clone(
        session=session, principal=principal, actor=actor, project=project, row=tool, body=body
    )
    _version, spec = await tool_repo.get_spec(session=session, tool_id=copy.id)
    return ToolPublic.of(copy, spec)


@router.post("/{tool_id}/runs", status_code=status.HTTP_201_CREATED)
async def run_tool(
    body: ToolRunCreate,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    tool: ToolDep,
    temporal_client: TemporalDep,
    settings: SettingsDep,
) -> ToolRunPublic:
    """Starts a run. With `"wait": true` the answer carries the result if the run finishes
    within `wait_seconds`; otherwise poll `GET .../tool-runs/{id}`."""
    run = await start_tool_run(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        project_id=project.id,
        tool_id=tool.id,
        params=body.params,
    )
    if body.wait:
        await wait_for_run(temporal_client, run, body.wait_seconds)
        await session.refresh(run)
    status, steps = await run_view(session=session, temporal_client=temporal_client, run=run)
    return ToolRunPublic.of(run, steps, settings.temporal_ui_link(run.workflow_id), status)
