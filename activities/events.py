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
    writing them in batches: once `max_batch` wait, or `max_delay` seconds after the first
    of them, and on `flush()`, which the producer calls at its end.

    Keys are `<key_prefix>:1`, `<key_prefix>:2`, ...: give a retried activity the same prefix
    and the events it emits again are not written twice."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        task_id: str,
        key_prefix: str,
        *,
        max_batch: int = 20,
        max_delay: float = 0.05,
    ) -> None:
        self._sessions = session_factory
        self._task_id = task_id
        self._key_prefix = key_prefix
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._emitted = 0
        self._pending: list[EventDraft] = []
        self._writing = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def emit(self, type: EventType, data: dict[str, Any] | None = None) -> None:
        self._emitted += 1
        key = f"{self._key_prefix}:{self._emitted}"
        self._pending.append(EventDraft(type=type, data=data or {}, key=key))
        if len(self._pending) >= self._max_batch:
            await self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._max_delay, self._write_in_background)

    async def flush(self) -> None:
        """Writes every event emitted so far; raises if the database refuses them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._background:
            await asyncio.wait(self._background)
        await self._write()

    def _write_in_background(self) -> None:
        self._timer = None
        task = asyncio.create_task(self._write_or_keep())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_or_keep(self) -> None:
        try:
            await self._write()
        except Exception:
            # The events stay pending: the next flush tries again, and raises if it fails.
            logger.warning("writing events of task %s failed", self._task_id, exc_info=True)

    async def _write(self) -> None:
        async with self._writing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                async with self._sessions.begin() as session:
                    await event_repo.append_events(
                        session=session, task_id=self._task_id, events=batch
                    )
            except BaseException:
                self._pending = batch + self._pending
                raise
