"""Built-in tool templates, and cloning one into a project."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Editor, PageDep, ProjectDep, SessionDep
from api.schemas.paging import Page
from api.schemas.tools import ToolPublic, ToolTemplatePublic
from baton.db.paging import page_of_list
from baton.db.repositories import tools as tool_repo
from baton.errors import NotFound
from baton.services.tool_runs import check_before_save
from baton.tool_templates import TEMPLATES

router = APIRouter(prefix="/api/v1", tags=["tool templates"])


@router.get("/tool-templates")
async def list_templates(page: PageDep) -> Page[ToolTemplatePublic]:
    """Built into Baton, by id; no token needed."""
    templates = page_of_list(list(TEMPLATES.values()), lambda t: t.id, page)
    return Page[ToolTemplatePublic].of(
        templates, lambda t: ToolTemplatePublic.model_validate(t.model_dump())
    )


@router.post(
    "/projects/{project_id}/tool-templates/{template_id}/clone",
    status_code=status.HTTP_201_CREATED,
)
async def clone_template(
    template_id: str, project: ProjectDep, session: SessionDep, _: Editor
) -> ToolPublic:
    template = TEMPLATES.get(template_id)
    if template is None:
        raise NotFound(f"no tool template {template_id!r}; see GET /api/v1/tool-templates")
    await check_before_save(session=session, project_id=project.id, spec=template.spec)
    tool = await tool_repo.create_tool(session=session, project_id=project.id, spec=template.spec)
    return ToolPublic.of(tool, template.spec)
