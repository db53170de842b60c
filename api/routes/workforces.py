"""Workforces of a project: definitions with versions, export, import and clone. Their tasks
are started and read under `.../workforces/{id}/tasks` and `.../tasks`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    ActorDep,
    Editor,
    PageDep,
    ProjectDep,
    SessionDep,
    TemporalDep,
    Viewer,
    WorkforceDep,
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
from api.schemas.workforces import (
    WorkforceCreate,
    WorkforcePublic,
    WorkforceUpdate,
    WorkforceVersionPublic,
)
from baton.db.repositories import triggers as trigger_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import Workforce
from baton.domain.workforces import WorkforceSpec
from baton.errors import Conflict
from baton.services import portable
from baton.services.schedules import delete_in_temporal
from baton.services.workforce_definitions import check_before_save, resolve_import

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/workforces",
    tags=["workforces"],
    dependencies=[Depends(get_project)],
)


@router.get("")
async def list_workforces(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[WorkforcePublic]:
    rows = await workforce_repo.list_workforces(session=session, project_id=project.id, page=page)
    return Page[WorkforcePublic].of(rows, WorkforcePublic.of)


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[Depends(bounded_definition)])
async def create_workforce(
    body: WorkforceCreate, project: ProjectDep, session: SessionDep, _: Editor
) -> WorkforcePublic:
    spec = WorkforceSpec.model_validate(body.model_dump(by_alias=True))
    return await _save_new(session, project.id, spec)


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_workforce(
    request: Request, project: ProjectDep, session: SessionDep, _: Editor, actor: ActorDep
) -> WorkforcePublic:
    """A workforce exported by `GET .../workforces/{id}/export`, as YAML or JSON
    (`Content-Type: application/json`): its agents and tools are this project's of the same
    names, or created from the document. A bare definition (an export from before documents
    had a `kind`, or a read) is taken too: each agent and tool is this project's of the same
    id, else of the `agent_name` or `tool_name` its node carries."""
    data = await read_import(request)
    if portable.is_document(data):
        workforce = await import_document(
            session=session, project=project, actor=actor, data=data, into=Workforce
        )
        return WorkforcePublic.of(workforce)
    spec = await resolve_import(session=session, project_id=project.id, data=data)
    return await _save_new(session, project.id, spec)


@router.get("/{workforce_id}")
async def get_workforce(_: Viewer, workforce: WorkforceDep) -> WorkforcePublic:
    return WorkforcePublic.of(workforce)


@router.patch("/{workforce_id}", dependencies=[Depends(bounded_definition)])
async def update_workforce(
    body: WorkforceUpdate,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    workforce: WorkforceDep,
) -> WorkforcePublic:
    """Saves the merged definition as a new version; tasks already started keep theirs."""
    changes = body.model_dump(exclude_unset=True, by_alias=True)
    spec = WorkforceSpec.model_validate({**workforce.spec, **changes})
    await check_before_save(session=session, project_id=project.id, spec=spec)
    workforce = await workforce_repo.update_workforce(
        session=session, project_id=project.id, workforce_id=workforce.id, spec=spec
    )
    return WorkforcePublic.of(workforce)


@router.get("/{workforce_id}/versions")
async def list_versions(
    session: SessionDep, _: Viewer, workforce: WorkforceDep, page: PageDep
) -> Page[WorkforceVersionPublic]:
    rows = await workforce_repo.list_versions(session=session, workforce_id=workforce.id, page=page)
    return Page[WorkforceVersionPublic].of(
        rows,
        lambda r: WorkforceVersionPublic(
            version=r.version, created_at=r.created_at, spec=WorkforceSpec.model_validate(r.spec)
        ),
    )


@router.delete("/{workforce_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workforce(
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    workforce: WorkforceDep,
    temporal_client: TemporalDep,
) -> None:
    """Refused while one of its tasks runs: deleting it would delete the task's record. Its
    webhooks and schedules go with it."""
    if await workforce_repo.has_unfinished_tasks(session=session, workforce_id=workforce.id):
        raise Conflict(
            f"workforce {workforce.id} has tasks that have not ended; cancel them or wait "
            "for them to end first"
        )
    # Its schedules live in Temporal too: stop them before the rows go.
    schedules = await trigger_repo.list_schedules(
        session=session, target=Target(project_id=project.id, workforce_id=workforce.id)
    )
    for schedule in schedules.items:
        await delete_in_temporal(temporal_client, schedule)
    await workforce_repo.delete_workforce(
        session=session, project_id=project.id, workforce_id=workforce.id
    )


@router.get("/{workforce_id}/export")
async def export_workforce(
    session: SessionDep, _: Viewer, workforce: WorkforceDep, format: Format = "yaml"
) -> Response:
    """A portable document: the graph, and the agents and tools it runs, all by name."""
    document = await portable.export_workforce(session=session, workforce=workforce)
    return document_response(document, format)


@router.post("/{workforce_id}/clone", status_code=status.HTTP_201_CREATED)
async def clone_workforce(
    project: ProjectDep,
    session: SessionDep,
    principal: Editor,
    actor: ActorDep,
    workforce: WorkforceDep,
    body: CloneRequest | None = None,
) -> WorkforcePublic:
    """A new workforce like this one: here, named "<name> (copy)" and running the same agents
    and tools; or in another project of the organisation (`{"project_id"}`), where each agent
    and tool it runs is that project's of the same name, or cloned along with it."""
    copy = await clone(
        session=session,
        principal=principal,
        actor=actor,
        project=project,
        row=workforce,
        body=body,
    )
    return WorkforcePublic.of(copy)


async def _save_new(session: AsyncSession, project_id: str, spec: WorkforceSpec) -> WorkforcePublic:
    await check_before_save(session=session, project_id=project_id, spec=spec)
    workforce = await workforce_repo.create_workforce(
        session=session, project_id=project_id, spec=spec
    )
    return WorkforcePublic.of(workforce)
