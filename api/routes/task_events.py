"""A task's events as Server-Sent Events: replayed after `Last-Event-ID` (or `?after=`), then
tailed live until the task is final. PostgreSQL wakes the stream with LISTEN/NOTIFY; SQLite
is polled. No database session stays open between reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import PrincipalDep, ProjectDep, SessionDep, SettingsDep
from api.limits import MAX_DB_INTEGER
from baton.db.engine import is_sqlite
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.domain.events import TaskEventOut
from baton.domain.tasks import TaskStatus
from baton.errors import NotFound

router = APIRouter(prefix="/api/v1/projects/{project_id}/tasks", tags=["tasks"])

PAGE = 500
PING_SECONDS = 15
SQLITE_POLL_SECONDS = 0.2
# A notification normally wakes the stream at once; this read covers one that never came.
FALLBACK_POLL_SECONDS = 3.0
# Shown in pg_stat_activity, so an operator can count the open streams.
LISTENER_NAME = "baton-task-events"

Wait = Callable[[], Awaitable[None]]


@router.get(
    "/{task_id}/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_task_events(
    task_id: str,
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_DB_INTEGER, description="Send the events after this seq")
    ] = 0,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_DB_INTEGER)] = None,
) -> EventSourceResponse:
    """Each event is `id: <seq>`, `event: <type>`, `data: <TaskEventOut as JSON>`. A
    reconnecting EventSource sends `Last-Event-ID`, which wins over `after`."""
    task = await task_repo.get_task(
        session=session, principal=principal, project_id=project.id, task_id=task_id
    )
    events = _task_events(
        request.app.state.session_factory,
        settings.resolved_database_url,
        task.id,
        after=after if last_event_id is None else last_event_id,
    )
    return EventSourceResponse(events, ping=PING_SECONDS)


async def _task_events(
    sessions: async_sessionmaker[AsyncSession], database_url: str, task_id: str, *, after: int
) -> AsyncIterator[ServerSentEvent]:
    async with _wakeups(database_url, task_id) as wait:
        while True:
            final, events = await _read(sessions, task_id, after=after)
            for event in events:
                yield ServerSentEvent(
                    data=event.model_dump_json(), event=event.type.value, id=str(event.seq)
                )
                after = event.seq
            if len(events) == PAGE:
                continue
            if final:
                return
            await wait()


async def _read(
    sessions: async_sessionmaker[AsyncSession], task_id: str, *, after: int
) -> tuple[bool, list[TaskEventOut]]:
    """Whether the task is final, and its next events. The status is read first, so once it
    is final the events read with it include every event written before it became final."""
    async with sessions() as session:
        try:
            task = await task_repo.get_task_by_id(session=session, task_id=task_id)
            final = TaskStatus(task.status).is_final
        except NotFound:  # deleted while streaming: nothing more will come
            final = True
        rows = await event_repo.list_events(
            session=session, task_id=task_id, after_seq=after, limit=PAGE
        )
    return final, [TaskEventOut.model_validate(row, from_attributes=True) for row in rows]


@asynccontextmanager
async def _wakeups(database_url: str, task_id: str) -> AsyncIterator[Wait]:
    """A `wait()` that returns when the task may have new events. On PostgreSQL a dedicated
    connection listens from before the first read, so no append can slip between the read
    and the wait; it is closed when the stream ends or the client goes away."""
    if is_sqlite(database_url):
        yield partial(asyncio.sleep, SQLITE_POLL_SECONDS)
        return

    notified = asyncio.Event()

    def on_notification(_connection: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == task_id:
            notified.set()

    async def wait() -> None:
        with anyio.move_on_after(FALLBACK_POLL_SECONDS):
            await notified.wait()
        notified.clear()

    connection = await asyncpg.connect(**_listener_connect_args(database_url))
    try:
        await connection.add_listener(event_repo.NOTIFY_CHANNEL, on_notification)
        yield wait
    finally:
        # Shielded: a disconnect cancels the stream, and the connection must close anyway.
        with anyio.CancelScope(shield=True):
            await connection.close(timeout=5)


def _listener_connect_args(database_url: str) -> dict[str, Any]:
    url = make_url(database_url)
    args: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
        "server_settings": {"application_name": LISTENER_NAME},
    }
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        args["ssl"] = ssl
    return args
