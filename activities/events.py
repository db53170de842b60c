"""Appending a task's events: an activity for workflows, a batching writer for activities."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from baton.db.repositories import events as event_repo
from baton.db.repositories import tool_runs as run_repo
from baton.domain.credits import PlanBook
from baton.domain.events import AppendEvents, EventDraft, EventType
from baton.errors import NotFound

logger = logging.getLogger("baton.events")


class EventActivities:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], plans: PlanBook) -> None:
        self._sessions = session_factory
        self._plans = plans

    @activity.defn(name="baton.task.append_events")
    async def append(self, batch: AppendEvents) -> None:
        """A workflow's events; a draft with a `key` is written once however often the
        activity is retried."""
        try:
            async with self._sessions.begin() as session:
                for new_run in batch.tool_runs:
                    await run_repo.ensure_run(session=session, new_run=new_run, plans=self._plans)
                await event_repo.append_events(
                    session=session, task_id=batch.task_id, events=batch.events
                )
        except NotFound as exc:
            raise ApplicationError(exc.message, type="not_found", non_retryable=True) from exc


class EventWriter:
    """Appends events one at a time from code that produces many (an LLM's streamed text),
    writing them as they come without a write per event: an event emitted when nothing was
    written for `window` seconds is written at once; what comes within the window after a
    write waits for its end (or for `max_batch` events) and goes in one write. Consecutive
    `message.delta` events waiting together become one, their texts joined, keeping the
    first one's other fields (its `at`: the oldest piece's): a long answer is at most one
    delta row per window, not one per token. `flush()`, which the producer calls at its end,
    writes what is left.

    Keys are `<key_prefix>:1`, `<key_prefix>:2`, ... per row written: a write retried after
    an error keeps its rows' keys, so nothing is written twice. Joined deltas are parted by
    timing, so a retried activity streams under a prefix of its own (the LLM activity's has
    the attempt); other events are never joined, and a retry emitting them again under the
    same prefix adds only the ones that are new."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        task_id: str,
        key_prefix: str,
        *,
        max_batch: int = 20,
        window: float = 0.05,
    ) -> None:
        self._sessions = session_factory
        self._task_id = task_id
        self._key_prefix = key_prefix
        self._max_batch = max_batch
        self._window = window
        self._emitted = 0
        self._pending: list[EventDraft] = []
        self._writing = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[bool]] = set()
        self._last_write = -window  # the loop's time when the last write began
        self._tried: set[str | None] = set()  # keys of rows a failed write sent

    async def emit(self, type: EventType, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        last = self._pending[-1] if self._pending else None
        if (
            type is EventType.message_delta
            and last is not None
            and last.type is type
            and last.key not in self._tried
        ):
            # Never sent (a write takes the pending list whole, and one that failed may
            # have committed after all, so its rows stay as they were): join it.
            last.data["text"] = f"{last.data.get('text', '')}{data.get('text', '')}"
            return
        self._emitted += 1
        key = f"{self._key_prefix}:{self._emitted}"
        self._pending.append(EventDraft(type=type, data=dict(data), key=key))
        if len(self._pending) >= self._max_batch:
            await self.flush()
        else:
            self._schedule()

    async def flush(self) -> None:
        """Writes every event emitted so far; raises if the database refuses them."""
        while True:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._background:
                break
            await asyncio.wait(set(self._background))  # its end may schedule another
        await self._write()

    def _schedule(self) -> None:
        """A write of the pending events at the end of the window, or at once after one."""
        if self._timer is not None or self._background or not self._pending:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_write + self._window - loop.time()
        if wait <= 0:
            self._write_in_background()
        else:
            self._timer = loop.call_later(wait, self._write_in_background)

    def _write_in_background(self) -> None:
        self._timer = None
        task = asyncio.create_task(self._write_or_keep())
        self._background.add(task)
        task.add_done_callback(self._written_in_background)

    def _written_in_background(self, task: asyncio.Task[bool]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.result():
            self._schedule()  # what came in during the write goes at the window's end

    async def _write_or_keep(self) -> bool:
        try:
            await self._write()
        except Exception:
            # The events stay pending: the next emit or flush tries again, and flush raises
            # if the database still refuses them.
            logger.warning("writing events of task %s failed", self._task_id, exc_info=True)
            return False
        return True

    async def _write(self) -> None:
        async with self._writing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            self._last_write = asyncio.get_running_loop().time()
            try:
                async with self._sessions.begin() as session:
                    await event_repo.append_events(
                        session=session, task_id=self._task_id, events=batch
                    )
            except BaseException:
                self._tried.update(draft.key for draft in batch)
                self._pending = batch + self._pending
                raise
            self._tried.clear()
