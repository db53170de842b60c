"""One reader of new task events per API process, fanning them out to every open stream.

A stream first replays what it missed from the database, then follows its task's `Feed`: the
hub reads each followed task's new events once (on PostgreSQL when its one LISTEN connection
is notified, on SQLite when the file's change counter says something was committed) and every
stream of that task takes them from the feed's buffer, already serialised. So 300 streams on
one task cost one read per update, not 300."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import ServerSentEvent

from baton.db.engine import is_sqlite
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.db.tables import TaskEvent
from baton.domain.events import TaskEventOut
from baton.domain.tasks import TaskStatus
from baton.errors import NotFound

logger = logging.getLogger("baton.events")

# How often SQLite's change counter (`PRAGMA data_version`, no table read) is looked at
# while a stream is open; the events are probed only after something was committed.
SQLITE_CHANGE_POLL_SECONDS = 0.01
# Without the counter (a database that is not a file): how often the events are probed.
SQLITE_POLL_SECONDS = 0.05
# A notification normally wakes the hub at once; this read covers one that never came, and
# how often a task's status is checked when it writes no events.
FALLBACK_POLL_SECONDS = 1.0
# Events a feed keeps for streams catching up; one further behind reads the database.
FEED_BUFFER = 2000
READ_PAGE = 500
# Shown in pg_stat_activity, so an operator can see the API's one listener.
LISTENER_NAME = "baton-task-events"


@dataclass(frozen=True)
class SentEvent:
    """An event as a stream sends it: serialised and framed once, for every stream."""

    seq: int
    frame: bytes
    """`id: <seq>`, `event: <type>`, `data: <TaskEventOut as JSON>`, as sse-starlette frames
    a `ServerSentEvent`."""


def sent(event: TaskEventOut) -> SentEvent:
    frame = ServerSentEvent(data=event.model_dump_json(), event=event.type.value, id=str(event.seq))
    return SentEvent(seq=event.seq, frame=frame.encode())


class Feed:
    """The events of one followed task since the feed began, and whether the task is final.
    `after` is the last seq the feed has; its buffer holds the most recent ones."""

    def __init__(self, task_id: str, after: int) -> None:
        self.task_id = task_id
        self.after = after
        self.begun_after = after
        self.final = False
        self.followers = 0
        self.events: deque[SentEvent] = deque(maxlen=FEED_BUFFER)
        self.status_checked_at = 0.0
        self._updated = asyncio.Event()

    def since(self, after: int) -> list[SentEvent] | None:
        """The buffered events after `after`, or None when some of them are not in the
        buffer (before the feed began, or dropped from it) and the stream must read them
        from the database."""
        if after >= self.after:
            return []
        if after < self.begun_after or self.events[0].seq > after + 1:
            return None
        newer: list[SentEvent] = []
        for event in reversed(self.events):  # a stream that keeps up wants only the last few
            if event.seq <= after:
                break
            newer.append(event)
        newer.reverse()
        return newer

    async def wait(self, after: int) -> None:
        """Returns once the feed has events after `after`, is final, or the hub checked the
        task's status (at least every FALLBACK_POLL_SECONDS while it runs). No timer of its
        own: one per wait of each of 300 streams cost more than the rest of their work."""
        if self.after > after or self.final:
            return
        await self._updated.wait()

    def add(self, events: list[SentEvent], final: bool, *, checked: bool = False) -> None:
        """New events, and whether the task is final; `checked`: its status was read, so
        the streams look at the feed again even if nothing came."""
        fresh = [event for event in events if event.seq > self.after]
        self.events.extend(fresh)
        if fresh:
            self.after = fresh[-1].seq
        self.final = self.final or final
        if fresh or final or checked:
            updated, self._updated = self._updated, asyncio.Event()
            updated.set()


class EventHub:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
        self._sessions = sessions
        self._database_url = database_url
        self._feeds: dict[str, Feed] = {}
        self._notified: set[str] = set()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._changes = SqliteChanges.of(database_url)

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="baton-event-hub")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._listener is not None:
            with anyio.CancelScope(shield=True):
                await self._listener.close(timeout=5)
        if self._changes is not None:
            self._changes.close()

    @contextlib.asynccontextmanager
    async def follow(self, task_id: str) -> AsyncIterator[Feed]:
        """The task's feed while the caller streams it; begun before the caller replays
        from the database, so no event falls between the replay and the feed."""
        feed = self._feeds.get(task_id)
        if feed is None:
            feed = Feed(task_id, after=await self._last_seq(task_id))
            feed = self._feeds.setdefault(task_id, feed)
        feed.followers += 1
        self._wake.set()
        try:
            yield feed
        finally:
            feed.followers -= 1
            if feed.followers == 0 and self._feeds.get(task_id) is feed:
                del self._feeds[task_id]

    async def _last_seq(self, task_id: str) -> int:
        async with self._sessions() as session:
            last = await session.scalar(
                select(func.max(TaskEvent.seq)).where(TaskEvent.task_id == task_id)
            )
        return int(last or 0)

    # The one reader

    async def _run(self) -> None:
        postgres = not is_sqlite(self._database_url)
        while True:
            try:
                if postgres and self._listener is None:
                    await self._listen()
                await self._wait_for_work(postgres)
                await self._read_feeds(postgres)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be restarting: keep the streams open and try again.
                logger.warning("reading new task events failed", exc_info=True)
                if self._listener is not None:
                    with contextlib.suppress(Exception):
                        await self._listener.close(timeout=1)
                    self._listener = None
                await asyncio.sleep(FALLBACK_POLL_SECONDS)

    async def _wait_for_work(self, postgres: bool) -> None:
        if not self._feeds:
            await self._wake.wait()
        self._wake.clear()
        if postgres:
            with anyio.move_on_after(FALLBACK_POLL_SECONDS):
                while not self._notified:
                    await self._wake.wait()
                    self._wake.clear()
        elif self._changes is None:
            await asyncio.sleep(SQLITE_POLL_SECONDS)
        else:
            # Read when another connection committed, and at least every FALLBACK_POLL_SECONDS
            # for the status checks.
            with anyio.move_on_after(FALLBACK_POLL_SECONDS):
                while not self._changes.changed():
                    await asyncio.sleep(SQLITE_CHANGE_POLL_SECONDS)

    async def _read_feeds(self, postgres: bool) -> None:
        now = time.monotonic()
        notified, self._notified = self._notified, set()
        feeds = list(self._feeds.values())
        if not postgres:
            # One probe for every followed task, then reads only where something is new.
            latest = await self._latest_seqs([feed.task_id for feed in feeds])
            notified = {feed.task_id for feed in feeds if latest.get(feed.task_id, 0) > feed.after}
        for feed in feeds:
            due = now - feed.status_checked_at >= FALLBACK_POLL_SECONDS
            if feed.task_id in notified or due:
                await self._read(feed, check_status=due)

    async def _latest_seqs(self, task_ids: list[str]) -> dict[str, int]:
        latest: dict[str, int] = {}
        async with self._sessions() as session:
            for start in range(0, len(task_ids), READ_PAGE):
                chunk = task_ids[start : start + READ_PAGE]
                rows = await session.execute(
                    select(TaskEvent.task_id, func.max(TaskEvent.seq))
                    .where(TaskEvent.task_id.in_(chunk))
                    .group_by(TaskEvent.task_id)
                )
                latest.update({task_id: int(seq) for task_id, seq in rows.all()})
        return latest

    async def _read(self, feed: Feed, *, check_status: bool) -> None:
        """The feed's new events. With the status: once it reads final, the events read
        after it are every event the task will ever have."""
        async with self._sessions() as session:
            rows = await event_repo.list_events(
                session=session, task_id=feed.task_id, after_seq=feed.after, limit=READ_PAGE
            )
            final = False
            if rows or check_status:
                final = await _is_final(session, feed.task_id)
                feed.status_checked_at = time.monotonic()
            while final:
                after = rows[-1].seq if rows else feed.after
                more = await event_repo.list_events(
                    session=session, task_id=feed.task_id, after_seq=after, limit=READ_PAGE
                )
                rows += more
                if len(more) < READ_PAGE:
                    break
        events = [sent(TaskEventOut.model_validate(row, from_attributes=True)) for row in rows]
        feed.add(events, final, checked=check_status)
        if not final and len(rows) == READ_PAGE:  # more than a page came in: read on at once
            self._notified.add(feed.task_id)
            self._wake.set()

    async def _listen(self) -> None:
        def on_notification(_connection: Any, _pid: int, _channel: str, payload: object) -> None:
            if isinstance(payload, str) and payload in self._feeds:
                self._notified.add(payload)
                self._wake.set()

        listener = await asyncpg.connect(**_listener_connect_args(self._database_url))
        await listener.add_listener(event_repo.NOTIFY_CHANNEL, on_notification)
        self._listener = listener
        # Anything written while there was no listener is read now.
        self._notified.update(self._feeds)


class SqliteChanges:
    """Whether anything was committed to a SQLite file since the last look: its
    `data_version`, read on a connection of its own (the counter moves when any other
    connection, in any process, commits). Microseconds, and never waits for a lock: a busy
    database answers "changed", and the hub then reads as it would have anyway."""

    def __init__(self, path: str) -> None:
        # mode=rw: never creates the file (the database is made by its migrations).
        uri = f"file:{urllib.parse.quote(path)}?mode=rw"
        self._connection = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
        self._version: int | None = None

    @classmethod
    def of(cls, database_url: str) -> SqliteChanges | None:
        if not is_sqlite(database_url):
            return None
        path = make_url(database_url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        try:
            return cls(path)
        except sqlite3.Error:
            return None

    def changed(self) -> bool:
        try:
            row = self._connection.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return True
        version = int(row[0])
        changed, self._version = version != self._version, version
        return changed

    def close(self) -> None:
        self._connection.close()


async def _is_final(session: AsyncSession, task_id: str) -> bool:
    try:
        task = await task_repo.get_task_by_id(session=session, task_id=task_id)
    except NotFound:  # deleted while streaming: nothing more will come
        return True
    return TaskStatus(task.status).is_final


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
