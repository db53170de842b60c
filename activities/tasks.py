"""Writing a task's projection (status, messages) for the API to read."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from baton.db.repositories import tasks as task_repo
from baton.domain.tasks import TaskMessageAppend, TaskStatusUpdate


class TaskActivities:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    @activity.defn(name="baton.task.set_status")
    async def set_status(self, update: TaskStatusUpdate) -> None:
        async with self._sessions.begin() as session:
            await task_repo.set_status(
                session=session, task_id=update.task_id, status=update.status, error=update.error
            )

    @activity.defn(name="baton.task.put_message")
    async def put_message(self, append: TaskMessageAppend) -> None:
        async with self._sessions.begin() as session:
            await task_repo.put_message(
                session=session, task_id=append.task_id, seq=append.seq, message=append.message
            )
