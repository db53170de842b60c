"""Saving an agent: its texts read only what it declares and never a secret, and every tool,
knowledge set, snippet and integration it names is the project's."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton import templating
from baton.db.repositories import integrations as integration_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tools as tool_repo
from baton.domain.agents import (
    PARAM_TEXTS,
    AgentSpec,
    check_param_references,
    check_secret_references,
)
from baton.errors import InvalidInput, NotFound


async def check_before_save(*, session: AsyncSession, project_id: str, spec: AgentSpec) -> None:
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
