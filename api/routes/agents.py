"""Agents of a project, and starting a task with one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
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
from api.schemas.agents import AgentCreate, AgentPublic, AgentUpdate, AgentVersionPublic
from api.schemas.paging import Page
from api.schemas.tasks import TaskCreate, TaskCreated
from baton import templating
from baton.db.repositories import accounts
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import integrations as integration_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tools as tool_repo
from baton.db.repositories import triggers as trigger_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.repositories.triggers import Target
from baton.domain.agents import (
    PARAM_TEXTS,
    AgentSpec,
    check_param_references,
    check_secret_references,
)
from baton.domain.tasks import TaskStatus
from baton.errors import Conflict, InvalidInput, NotFound
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
    await _check_references(session, project.id, spec)
    agent = await agent_repo.create_agent(session=session, project_id=project.id, spec=spec)
    return AgentPublic.of(agent)


@router.get("/{agent_id}")
async def get_agent(_: Viewer, agent: AgentDep) -> AgentPublic:
    return AgentPublic.of(agent)


@router.patch("/{agent_id}", dependencies=[Depends(bounded_definition)])
async def update_agent(
    body: AgentUpdate, project: ProjectDep, session: SessionDep, _: Editor, agent: AgentDep
) -> AgentPublic:
    spec = AgentSpec.model_validate({**agent.spec, **body.model_dump(exclude_unset=True)})
    await _check_references(session, project.id, spec)
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


async def _check_references(session: AsyncSession, project_id: str, spec: AgentSpec) -> None:
    check_param_references(spec)
    check_secret_references(spec)
    await _check_tools(session, project_id, spec)
    await _check_knowledge(session, project_id, spec)
    await _check_snippets(session, project_id, spec)
    for index, attached in enumerate(spec.mcp):
        await integration_repo.check_mcp_reference(
            session=session,
            project_id=project_id,
            name=attached.integration,
            field=f"mcp[{index}].integration",
        )
    if spec.integration is not None:
        await integration_repo.check_reference(
            session=session,
            project_id=project_id,
            name=spec.integration,
            model=spec.model,
            field="integration",
        )


async def _check_snippets(session: AsyncSession, project_id: str, spec: AgentSpec) -> None:
    known = await snippet_repo.snippet_names(session=session, project_id=project_id)
    for field in PARAM_TEXTS:
        try:
            unknown = sorted(templating.references(getattr(spec, field)).of("snippets") - known)
        except templating.TemplateError:
            continue  # reported by check_param_references when it is a template of ours
        if unknown:
            raise InvalidInput(
                f"{field}: unknown snippet {unknown[0]!r}; create it first",
                details=[{"field": field, "message": f"unknown snippet {n!r}"} for n in unknown],
            )


async def _check_knowledge(session: AsyncSession, project_id: str, spec: AgentSpec) -> None:
    for index, attached in enumerate(spec.knowledge):
        try:
            await set_repo.get_set(session=session, project_id=project_id, set_id=attached.set_id)
        except NotFound as exc:
            raise InvalidInput(
                f"knowledge[{index}]: no knowledge set {attached.set_id!r} in this project",
                details=[{"field": f"knowledge[{index}].set_id", "message": "unknown set"}],
            ) from exc


async def _check_tools(session: AsyncSession, project_id: str, spec: AgentSpec) -> None:
    for index, agent_tool in enumerate(spec.tools):
        try:
            await tool_repo.get_tool(
                session=session, project_id=project_id, tool_id=agent_tool.tool_id
            )
        except NotFound as exc:
            raise InvalidInput(
                f"tools[{index}]: no tool {agent_tool.tool_id!r} in this project",
                details=[{"field": f"tools[{index}].tool_id", "message": "unknown tool"}],
            ) from exc
