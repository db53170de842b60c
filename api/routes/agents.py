"""Agents of a project: definitions with versions, export, import and clone, and starting a
task with one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    ActorDep,
    AgentDep,
    Editor,
    PageDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
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
from api.schemas.agents import AgentCreate, AgentPublic, AgentUpdate, AgentVersionPublic
from api.schemas.paging import Page
from api.schemas.tasks import TaskCreate, TaskCreated
from baton.db.repositories import accounts
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import triggers as trigger_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import Agent
from baton.domain.agents import AgentSpec
from baton.domain.tasks import TaskStatus
from baton.errors import Conflict, InvalidInput
from baton.services import portable
from baton.services.agent_definitions import check_before_save
from baton.services.schedules import delete_in_temporal
from baton.services.tasks import start_agent_task

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/agents",
    tags=["agents"],
    dependencies=[Depends(get_project)],
)


@router.get("")
async def list_agents(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[AgentPublic]:
    agents = await agent_repo.list_agents(session=session, project_id=project.id, page=page)
    return Page[AgentPublic].of(agents, AgentPublic.of)


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[Depends(bounded_definition)])
async def create_agent(
    body: AgentCreate, project: ProjectDep, session: SessionDep, _: Editor
) -> AgentPublic:
    spec = AgentSpec.model_validate(body.model_dump())
    await check_before_save(session=session, project_id=project.id, spec=spec)
    agent = await agent_repo.create_agent(session=session, project_id=project.id, spec=spec)
    return AgentPublic.of(agent)


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_agent(
    request: Request, project: ProjectDep, session: SessionDep, _: Editor, actor: ActorDep
) -> AgentPublic:
    """An agent exported by `GET .../agents/{id}/export`, as JSON or YAML (`Content-Type:
    application/yaml`), from this project, another or another installation: its tools are
    this project's of the same names, or created from the document. A bare definition (a read
    of an agent of this project) is taken too."""
    data = await read_import(request)
    if not portable.is_document(data):
        return AgentPublic.of(await _import_definition(session, project.id, data))
    agent = await import_document(
        session=session, project=project, actor=actor, data=data, into=Agent
    )
    return AgentPublic.of(agent)


@router.get("/{agent_id}")
async def get_agent(_: Viewer, agent: AgentDep) -> AgentPublic:
    return AgentPublic.of(agent)


@router.patch("/{agent_id}", dependencies=[Depends(bounded_definition)])
async def update_agent(
    body: AgentUpdate, project: ProjectDep, session: SessionDep, _: Editor, agent: AgentDep
) -> AgentPublic:
    spec = AgentSpec.model_validate({**agent.spec, **body.model_dump(exclude_unset=True)})
    await check_before_save(session=session, project_id=project.id, spec=spec)
    agent = await agent_repo.update_agent(
        session=session, project_id=project.id, agent_id=agent.id, spec=spec
    )
    return AgentPublic.of(agent)


@router.get("/{agent_id}/versions")
async def list_versions(
    session: SessionDep, _: Viewer, agent: AgentDep, page: PageDep
) -> Page[AgentVersionPublic]:
    rows = await agent_repo.list_versions(session=session, agent_id=agent.id, page=page)
    return Page[AgentVersionPublic].of(
        rows,
        lambda r: AgentVersionPublic(
            version=r.version, created_at=r.created_at, spec=AgentSpec.model_validate(r.spec)
        ),
    )


@router.get("/{agent_id}/export")
async def export_agent(
    session: SessionDep, _: Viewer, agent: AgentDep, format: Format = "json"
) -> Response:
    """A portable document: the definition, and the tools it runs, all by name."""
    return document_response(await portable.export_agent(session=session, agent=agent), format)


@router.post("/{agent_id}/clone", status_code=status.HTTP_201_CREATED)
async def clone_agent(
    project: ProjectDep,
    session: SessionDep,
    principal: Editor,
    actor: ActorDep,
    agent: AgentDep,
    body: CloneRequest | None = None,
) -> AgentPublic:
    """A new agent like this one, here ("<name> (copy)") or in another project of the
    organisation (`{"project_id"}`), where its tools are that project's of the same names or
    cloned along with it."""
    copy = await clone(
        session=session, principal=principal, actor=actor, project=project, row=agent, body=body
    )
    return AgentPublic.of(copy)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    agent: AgentDep,
    temporal_client: TemporalDep,
) -> None:
    users = await workforce_repo.users_of(session=session, project_id=project.id, agent_id=agent.id)
    if users:
        raise Conflict(
            f"agent {agent.name!r} is a node of {', '.join(users)}; change those first",
            details={"used_by": users},
        )
    # Its schedules live in Temporal too: stop them before the rows go.
    schedules = await trigger_repo.list_schedules(
        session=session, target=Target(project_id=project.id, agent_id=agent.id)
    )
    for schedule in schedules.items:
        await delete_in_temporal(temporal_client, schedule)
    await agent_repo.delete_agent(session=session, project_id=project.id, agent_id=agent.id)


@router.post("/{agent_id}/tasks", status_code=status.HTTP_201_CREATED)
async def start_task(
    body: TaskCreate,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
    agent: AgentDep,
    temporal_client: TemporalDep,
    settings: SettingsDep,
) -> TaskCreated:
    user_group_id = None
    if body.user_group is not None:
        group = await accounts.find_user_group(
            session=session,
            org_id=project.org_id,
            provided_id=body.user_group,
            environment=body.user_group_environment,
        )
        user_group_id = group.id
    task = await start_agent_task(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        agent=agent,
        message=body.message,
        user_group_id=user_group_id,
        params=body.params,
    )
    return TaskCreated(
        id=task.id,
        workflow_id=task.workflow_id,
        status=TaskStatus(task.status),
        temporal_ui_url=settings.temporal_ui_link(task.workflow_id),
    )


async def _import_definition(session: AsyncSession, project_id: str, data: object) -> Agent:
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in portable.READ_ONLY}
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            "the imported agent is not valid",
            details=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from exc
    await check_before_save(session=session, project_id=project_id, spec=spec)
    return await agent_repo.create_agent(session=session, project_id=project_id, spec=spec)
