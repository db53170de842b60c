"""The console's pages, assembled: each group of pages is a module with its own router
(sign_in, agents, tasks, chat, tools, knowledge, workforces, usage), and `install` mounts
them with the static files."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from api.console import agents, chat, knowledge, sign_in, tasks, tools, usage, workforces
from api.console.core import HERE, NoProject, SignedOut, clear_session, see


def install(app: FastAPI) -> None:
    app.include_router(sign_in.router)
    app.include_router(agents.router)
    app.include_router(tasks.router)
    app.include_router(chat.router)
    app.include_router(tools.router)
    app.include_router(knowledge.router)
    app.include_router(workforces.router)
    app.include_router(usage.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(SignedOut, _to_sign_in)
    app.add_exception_handler(NoProject, _to_projects)


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    response = see("/sign-in")
    clear_session(response)
    return response


async def _to_projects(request: Request, exc: Exception) -> Response:
    return see("/projects")
