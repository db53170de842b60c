"""The agents pages: the list with a form to create one, an agent with its versions, and
the form that edits it (each save is a new version)."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
from api.deps import SessionDep
from api.limits import check_definition
from api.routes import agents as agent_routes
from api.schemas.agents import AgentCreate, AgentUpdate
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import Agent
from baton.domain.agents import AgentSpec, Approval
from baton.domain.knowledge import AttachMode
from baton.errors import InvalidInput

router = console_router()


@router.get("/agents")
async def agents_page(request: Request, console: ViewerConsole, session: SessionDep) -> Response:
    return await _agents(request, console, session)


async def _agents(
    request: Request,
    console: Console,
    session: SessionDep,
    *,
    error: str = "",
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    return render(
        request,
        "agents.html",
        console.state,
        console=console,
        agents=agents.items,
        error=error,
        values=values or {"model": "scripted:echo"},
        status_code=status_code,
    )


@router.post("/agents")
async def create_agent(
    request: Request, console: EditorConsole, session: SessionDep, form: FormDep
) -> Response:
    values = {name: form[name] for name in ("name", "model", "system_prompt")}

    async def create() -> str:
        check_definition(values)
        agent = await agent_routes.create_agent(
            body=AgentCreate.model_validate(values),
            project=console.project,
            session=session,
            _=console.principal,
        )
        return f"/agents/{agent.id}"

    async def again(error: str, status_code: int) -> Response:
        return await _agents(
            request, console, session, error=error, values=values, status_code=status_code
        )

    return await submit(create, on_error=again)


@router.get("/agents/{agent_id}")
async def agent_page(
    agent_id: str, request: Request, console: ViewerConsole, session: SessionDep
) -> Response:
    agent = await agent_repo.get_agent(
        session=session, project_id=console.project.id, agent_id=agent_id
    )
    versions = await agent_repo.list_versions(session=session, agent_id=agent.id)
    return render(
        request,
        "agent.html",
        console.state,
        console=console,
        agent=agent,
        versions=list(reversed(versions.items)),
    )


# The choices of a tool's and a knowledge set's select on the edit form ("" leaves it off).
TOOL_CHOICES = ["", *(a.value for a in Approval)]
KNOWLEDGE_CHOICES = ["", *(m.value for m in AttachMode)]


@dataclass(frozen=True)
class AgentForm:
    """The edit form's values: from the agent's definition, or as the member posted them
    (shown again when they are refused)."""

    name: str
    model: str
    system_prompt: str
    welcome_message: str
    temperature: str
    tools: dict[str, str]
    """Each attached tool's approval mode, by tool id."""
    knowledge: dict[str, str]
    """Each attached set's mode, by set id."""
    params: str
    """The typed params as JSON."""

    @classmethod
    def of_spec(cls, spec: AgentSpec) -> AgentForm:
        return cls(
            name=spec.name,
            model=spec.model,
            system_prompt=spec.system_prompt,
            welcome_message=spec.welcome_message,
            temperature=str(spec.temperature),
            tools={t.tool_id: t.approval.value for t in spec.tools},
            knowledge={k.set_id: k.mode.value for k in spec.knowledge},
            params=json.dumps(
                [p.model_dump(mode="json", exclude_defaults=True) for p in spec.params]
            ),
        )

    @classmethod
    def of_form(cls, form: Form) -> AgentForm:
        return cls(
            name=form["name"],
            model=form["model"],
            system_prompt=form["system_prompt"],
            welcome_message=form["welcome_message"],
            temperature=form["temperature"] or "0",
            tools=_picked(form, "tool."),
            knowledge=_picked(form, "knowledge."),
            params=form["params"],
        )

    def changes(self, current: AgentSpec) -> dict[str, Any]:
        """The update the form asks for. A tool or set left attached keeps its other
        settings (a tool's `max_auto_runs`, a set's token budget)."""
        tools = {t.tool_id: t.model_dump(mode="json") for t in current.tools}
        sets = {k.set_id: k.model_dump(mode="json") for k in current.knowledge}
        return {
            "name": self.name,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "welcome_message": self.welcome_message,
            "temperature": self.temperature,
            "tools": [
                {**tools.get(tool_id, {}), "tool_id": tool_id, "approval": mode}
                for tool_id, mode in self.tools.items()
            ],
            "knowledge": [
                {**sets.get(set_id, {}), "set_id": set_id, "mode": mode}
                for set_id, mode in self.knowledge.items()
            ],
            "params": _json_list(self.params, "params"),
        }


def _picked(form: Form, prefix: str) -> dict[str, str]:
    """The choice of each `<prefix><id>` select not left on "" (off), by id."""
    return {
        name.removeprefix(prefix): form[name]
        for name in form.data
        if name.startswith(prefix) and form[name]
    }


def _json_list(text: str, field: str) -> list[Any]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{field}: not JSON ({exc})") from exc
    if not isinstance(value, list):
        raise InvalidInput(f'{field}: a JSON list of params, like [{{"name": "city"}}]')
    return value


@router.get("/agents/{agent_id}/edit")
async def edit_page(
    agent_id: str, request: Request, console: EditorConsole, session: SessionDep
) -> Response:
    agent = await agent_repo.get_agent(
        session=session, project_id=console.project.id, agent_id=agent_id
    )
    values = AgentForm.of_spec(AgentSpec.model_validate(agent.spec))
    return await _edit(request, console, session, agent, values)


async def _edit(
    request: Request,
    console: Console,
    session: SessionDep,
    agent: Agent,
    values: AgentForm,
    *,
    error: str = "",
    status_code: int = 200,
) -> Response:
    tools = await tool_repo.list_tools(session=session, project_id=console.project.id)
    sets = await set_repo.list_sets(session=session, project_id=console.project.id)
    return render(
        request,
        "agent_edit.html",
        console.state,
        console=console,
        agent=agent,
        values=values,
        tools=tools,
        sets=sets.items,
        tool_choices=TOOL_CHOICES,
        knowledge_choices=KNOWLEDGE_CHOICES,
        error=error,
        status_code=status_code,
    )


@router.post("/agents/{agent_id}")
async def edit_agent(
    agent_id: str, request: Request, console: EditorConsole, session: SessionDep, form: FormDep
) -> Response:
    """Saves the form as the agent's next version, through the API's update."""
    agent = await agent_repo.get_agent(
        session=session, project_id=console.project.id, agent_id=agent_id
    )
    values = AgentForm.of_form(form)

    async def save() -> str:
        changes = values.changes(AgentSpec.model_validate(agent.spec))
        check_definition(changes)
        await agent_routes.update_agent(
            body=AgentUpdate.model_validate(changes),
            project=console.project,
            session=session,
            _=console.principal,
            agent=agent,
        )
        return f"/agents/{agent.id}"

    async def again(error: str, status_code: int) -> Response:
        return await _edit(
            request, console, session, agent, values, error=error, status_code=status_code
        )

    return await submit(save, on_error=again)
