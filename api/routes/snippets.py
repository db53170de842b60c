"""Snippets: named texts of a project, read as `{{ snippets.<name> }}` by system prompts, tool
prompts and step templates. A run pins the texts it reads when it starts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from api.deps import Editor, PageDep, ProjectDep, SessionDep, Viewer, get_project
from api.schemas.paging import Page
from api.schemas.snippets import SnippetPublic, SnippetPut
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tools as tool_repo
from baton.domain.agents import AgentSpec
from baton.domain.tool_checks import referenced_snippets
from baton.domain.tools import IDENTIFIER
from baton.errors import Conflict

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/snippets",
    tags=["snippets"],
    dependencies=[Depends(get_project)],
)

SnippetName = Annotated[str, Path(pattern=IDENTIFIER)]


@router.get("")
async def list_snippets(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[SnippetPublic]:
    """By name."""
    rows = await snippet_repo.list_snippets(session=session, project_id=project.id, page=page)
    return Page[SnippetPublic].of(rows, SnippetPublic.model_validate)


@router.get("/{name}")
async def get_snippet(
    name: SnippetName, project: ProjectDep, session: SessionDep, _: Viewer
) -> SnippetPublic:
    row = await snippet_repo.get_snippet(session=session, project_id=project.id, name=name)
    return SnippetPublic.model_validate(row)


@router.put("/{name}", responses={201: {"description": "Created"}})
async def put_snippet(
    name: SnippetName,
    body: SnippetPut,
    response: Response,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
) -> SnippetPublic:
    """Creates the snippet (201) or replaces its text (200). Runs already started keep the
    text they started with."""
    row, created = await snippet_repo.put_snippet(
        session=session, project_id=project.id, name=name, text=body.text
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return SnippetPublic.model_validate(row)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_snippet(
    name: SnippetName, project: ProjectDep, session: SessionDep, _: Editor
) -> None:
    """Refused (409) while a tool or an agent reads the snippet: they would fail to save."""
    await snippet_repo.get_snippet(session=session, project_id=project.id, name=name)
    users = await _readers(session, project.id, name)
    if users:
        raise Conflict(
            f"snippet {name!r} is used by {', '.join(users)}; change those first",
            details={"used_by": users},
        )
    await snippet_repo.delete_snippet(session=session, project_id=project.id, name=name)


async def _readers(session: SessionDep, project_id: str, name: str) -> list[str]:
    tools = await tool_repo.current_specs(session=session, project_id=project_id)
    readers = [
        f"tool {tool.name!r}" for tool, spec in tools.items if name in referenced_snippets(spec)
    ]
    for agent in (await agent_repo.list_agents(session=session, project_id=project_id)).items:
        if name in AgentSpec.model_validate(agent.spec).snippet_names():
            readers.append(f"agent {agent.name!r}")
    return readers
