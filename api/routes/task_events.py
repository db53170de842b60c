"""A task's events as Server-Sent Events: replayed after `Last-Event-ID` (or `?after=`), then
tailed live until the task is final. The API process reads new events once for all its
streams (`api.event_hub`); no database session stays open between reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse

from api.deps import PrincipalDep, ProjectDep, SessionDep
from api.event_hub import EventHub, sent
from api.limits import MAX_DB_INTEGER
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.domain.events import TaskEventOut
from baton.domain.tasks import TaskStatus
from baton.errors import NotFound

router = APIRouter(prefix="/api/v1/projects/{project_id}/tasks", tags=["tasks"])

PAGE = 500
PING_SECONDS = 15


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
        request.app.state.event_hub,
        request.app.state.session_factory,
        task.id,
        after=after if last_event_id is None else last_event_id,
    )
    return EventSourceResponse(events, ping=PING_SECONDS)


async def _task_events(
    hub: EventHub, sessions: async_sessionmaker[AsyncSession], task_id: str, *, after: int
) -> AsyncIterator[bytes]:
    """Replays from the database what the feed does not hold, then follows the feed."""
    async with hub.follow(task_id) as feed:
        while True:
            batch = feed.since(after)
            final = False
            if batch is None:
                final, events = await _read(sessions, task_id, after=after)
                final = final and len(events) < PAGE
                batch = [sent(event) for event in events]
            if batch:
                # One write for what came in together, of frames made once for every stream.
                yield b"".join(event.frame for event in batch)
                after = batch[-1].seq
            if final or (feed.final and feed.since(after) == []):
                return
            if not batch:
                await feed.wait(after)


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
