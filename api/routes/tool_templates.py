"""Built-in tool templates, and cloning one into a project."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import PrincipalDep, ProjectDep, SessionDep, require_role
from api.schemas.tools import ToolPublic, ToolTemplatePublic
from baton.db.repositories import tools as tool_repo
from baton.domain.accounts import Role
from baton.errors import NotFound
from baton.services.tool_runs import check_before_save
from baton.tool_templates import TEMPLATES

router = APIRouter(prefix="/api/v1", tags=["tool templates"])


@router.get("/tool-templates")
async def list_templates() -> list[ToolTemplatePublic]:
    return [ToolTemplatePublic.model_validate(t.model_dump()) for t in TEMPLATES.values()]


@router.post(
    "/projects/{project_id}/tool-templates/{template_id}/clone",
    status_code=status.HTTP_201_CREATED,
)
async def clone_template(
    template_id: str, project: ProjectDep, session: SessionDep, principal: PrincipalDep
) -> ToolPublic:
    require_role(principal, Role.editor)
    template = TEMPLATES.get(template_id)
    if template is None:
        raise NotFound(f"no tool template {template_id!r}; see GET /api/v1/tool-templates")
    await check_before_save(session=session, project_id=project.id, spec=template.spec)
    tool = await tool_repo.create_tool(session=session, project_id=project.id, spec=template.spec)
    return ToolPublic.of(tool, template.spec)
