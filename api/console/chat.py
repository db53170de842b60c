"""The chat playground: pick an agent and start a conversation; its task page goes on."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from api.console.core import (
    Console,
    EditorConsole,
    FormDep,
    ViewerConsole,
    console_router,
    render,
    submit,
)
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.routes import agents as agent_routes
from api.schemas.tasks import TaskCreate
from baton.db.repositories import agents as agent_repo

router = console_router()


@router.get("/chat")
async def chat_page(
    request: Request, console: ViewerConsole, session: SessionDep, agent_id: str = ""
) -> Response:
    return await _chat(request, console, session, agent_id=agent_id)


async def _chat(
    request: Request,
    console: Console,
    session: SessionDep,
    *,
    agent_id: str = "",
    message: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    return render(
        request,
        "chat.html",
        console.state,
        console=console,
        agents=agents.items,
        agent_id=agent_id,
        message=message,
        error=error,
        status_code=status_code,
    )


@router.post("/chat")
async def start_chat(
    request: Request,
    console: EditorConsole,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    """Starts a task with the agent; its page is the conversation."""
    agent_id, message = form["agent_id"], form["message"]

    async def start() -> str:
        agent = await agent_repo.get_agent(
            session=session, project_id=console.project.id, agent_id=agent_id
        )
        created = await agent_routes.start_task(
            body=TaskCreate(message=message),
            project=console.project,
            session=session,
            _=console.principal,
            agent=agent,
            temporal_client=temporal_client,
            settings=settings,
        )
        return f"/tasks/{created.id}"

    async def again(error: str, status_code: int) -> Response:
        return await _chat(
            request,
            console,
            session,
            agent_id=agent_id,
            message=message,
            error=error,
            status_code=status_code,
        )

    return await submit(start, on_error=again)
