"""What the public pages share: their templates, the framing each allows, an error page in
place of JSON, and a conversation as a visitor may see it (never the prompt, tool configs or
secrets: the messages, and tool calls by name unless the embedder hides them)."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from baton.db.repositories import rate_limits as rate_repo
from baton.db.repositories import tasks as task_repo
from baton.db.tables import Task, utcnow
from baton.domain.rate_limits import RateLimited, window_of
from baton.domain.tasks import Message, TaskStatus
from baton.errors import BatonError
from baton.services import closed_runs
from baton.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

# The console's pages are never framed; a share link's page is not either (it may be opened
# on its own). Embed and dashboard pages are made to live in another site's iframe.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def framing(request: Request, frameable: bool) -> dict[str, str]:
    """The headers of a page: frameable ones by the sites `embed_frame_ancestors` names."""
    if not frameable:
        return NOT_FRAMED
    settings: Settings = request.app.state.settings
    return {"Content-Security-Policy": f"frame-ancestors {settings.embed_frame_ancestors}"}


# Pages reload themselves this often while the agent or the tool works.
REFRESH_SECONDS = 1
WORKING = {TaskStatus.queued, TaskStatus.running}
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_PROMPTS = 6
MAX_PROMPT_CHARS = 200


class PageRoute(APIRoute):
    """A public page that fails answers with an HTML page naming the problem and the 4xx the
    API would give (404 for a link that never was, 410 for a revoked one)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except BatonError as exc:
                return templates.TemplateResponse(
                    request,
                    "sharing_error.html",
                    {"problem": exc.message, "code": exc.status_code, "options": Options()},
                    status_code=exc.status_code,
                    headers=framing(request, _frameable(request)),
                )

        return handle


def _frameable(request: Request) -> bool:
    return request.url.path.startswith(("/embed/", "/dashboard"))


@dataclass(frozen=True)
class Options:
    """What an embedder chose (the widget's data- attributes, passed as query params): an
    accent colour, starting prompts, and whether tool steps are hidden."""

    color: str = ""
    prompts: tuple[str, ...] = ()
    hide_steps: bool = False

    @classmethod
    def of(cls, request: Request) -> Options:
        query = request.query_params
        color = query.get("color", "")
        prompts = tuple(
            p.strip()[:MAX_PROMPT_CHARS] for p in query.get("prompts", "").split("|") if p.strip()
        )
        return cls(
            color=color if COLOR.match(color) else "",
            prompts=prompts[:MAX_PROMPTS],
            hide_steps=query.get("hide_steps", "") in ("1", "true", "yes"),
        )

    @property
    def query(self) -> str:
        """The options again, for the links and forms of the next page."""
        return self.query_with()

    def query_with(self, **extra: str | int) -> str:
        values = {
            "color": self.color,
            "prompts": "|".join(self.prompts),
            "hide_steps": "1" if self.hide_steps else "",
            **{name: str(value) for name, value in extra.items()},
        }
        kept = urlencode({k: v for k, v in values.items() if v})
        return f"?{kept}" if kept else ""


async def count_use(request: Request, settings: Settings, key: str) -> None:
    """Counts one start or message under `key` (a share link, a user group's dashboard),
    whoever the visitor is: 429 past `share_link_requests_per_minute`."""
    minute, reset_seconds = window_of(utcnow())
    async with request.app.state.session_factory.begin() as session:
        used = await rate_repo.count_request(session=session, token_key=key, minute=minute)
    limit = settings.share_link_requests_per_minute
    if used > limit:
        raise RateLimited(
            f"too many messages here: at most {limit} a minute; try again in {reset_seconds} s",
            details={"share_link_requests_per_minute": limit, "retry_after": reset_seconds},
        )


def page(
    request: Request,
    template: str,
    *,
    frameable: bool,
    options: Options,
    set_cookies: Callable[[Response], None] | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    response = templates.TemplateResponse(
        request,
        template,
        {"options": options, **context},
        status_code=status_code,
        headers=framing(request, frameable),
    )
    if set_cookies is not None:
        set_cookies(response)
    return response


def see(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True)
class Line:
    """One entry of a conversation as a visitor sees it."""

    role: str
    content: str
    tools: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Conversation:
    """`sent_after`: how many lines there were when the visitor sent a message (the page
    after sending says), so the page reloads until it is answered even before the task
    shows it is working again."""

    task: Task
    status: TaskStatus
    lines: list[Line]
    sent_after: int | None = None

    @property
    def working(self) -> bool:
        if self.final:
            return False
        answered = self.sent_after is None or len(self.lines) >= self.sent_after + 2
        return self.status in WORKING or not answered

    @property
    def final(self) -> bool:
        return self.status.is_final


async def conversation(
    *,
    session: AsyncSession,
    temporal_client: Client,
    task: Task,
    hide_steps: bool,
    sent_after: int | None = None,
) -> Conversation:
    if not TaskStatus(task.status).is_final and await closed_runs.settle_if_closed(
        client=temporal_client,
        session=session,
        workflow_id=task.workflow_id,
        updated_at=task.updated_at,
    ):
        await session.commit()
        await session.refresh(task)
    messages = await task_repo.list_messages(session=session, task_id=task.id)
    return Conversation(
        task=task,
        status=TaskStatus(task.status),
        lines=_lines(messages, hide_steps),
        sent_after=sent_after,
    )


def _lines(messages: list[Message], hide_steps: bool) -> list[Line]:
    lines: list[Line] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "tool":
            if not hide_steps:
                lines.append(Line(role="tool", content=f"{message.name or 'tool'} answered"))
            continue
        tools = [] if hide_steps else [call.name for call in message.tool_calls or []]
        if message.content or tools:
            lines.append(Line(role=message.role, content=message.content or "", tools=tools))
    return lines
