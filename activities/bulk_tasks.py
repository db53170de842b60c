"""Bulk runs' batches: each claims the next rows of a run and starts one agent task per row
through `start_agent_task`, the one way tasks start (quotas, credits and the concurrency
queue apply to each as to any task).

At most once per row, even across a crash: a row is claimed (`starting`) before its task
starts, under the task id `bulk_task_id(run, row)`; a batch retried after a crash claims the
rows it left `starting` again and starts them under the same ids, which finds the task that
already started instead of starting a second."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client

from activities.errors import as_application_error
from baton import templating
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import bulk_tasks as bulk_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.tables import Agent
from baton.domain.bulk_tasks import (
    BulkBatch,
    BulkBatchOutcome,
    BulkStatusUpdate,
    RowState,
    bulk_task_id,
    render_message,
)
from baton.errors import BatonError, NotFound, ServiceUnavailable
from baton.services.tasks import start_agent_task
from baton.settings import Settings

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class _Run:
    bulk_id: str
    project_id: str
    agent_id: str
    template: str


class BulkTaskActivities:
    def __init__(
        self,
        client: Client,
        session_factory: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        self._client = client
        self._sessions = session_factory
        self._settings = settings

    @activity.defn(name="baton.bulk_tasks.start_batch")
    async def start_batch(self, batch: BulkBatch) -> BulkBatchOutcome:
        try:
            async with self._sessions.begin() as session:
                run = await bulk_repo.get_run_by_id(session=session, bulk_id=batch.bulk_id)
                plan = _Run(
                    bulk_id=run.id,
                    project_id=run.project_id,
                    agent_id=run.agent_id,
                    template=run.params["message_template"],
                )
                row_ids = await bulk_repo.claim_rows(
                    session=session, bulk_id=batch.bulk_id, limit=batch.limit
                )
                rows = await row_repo.row_data(session=session, set_id=run.set_id, row_ids=row_ids)
        except BatonError as exc:
            raise as_application_error(exc) from None
        outcome = BulkBatchOutcome()
        try:
            for row_id in row_ids:
                activity.heartbeat(row_id)
                if await self._start_row(plan, row_id, rows.get(row_id)) is RowState.started:
                    outcome.started += 1
                else:
                    outcome.failed += 1
        except asyncio.CancelledError:
            # The run is being cancelled: the rows claimed and not started go back, so the
            # run's end cancels them with the rest instead of leaving them `starting`.
            await self._release(batch.bulk_id, row_ids)
            raise
        async with self._sessions() as session:
            outcome.remaining = await bulk_repo.pending_count(
                session=session, bulk_id=batch.bulk_id
            )
        return outcome

    async def _start_row(self, run: _Run, row_id: int, data: dict[str, Any] | None) -> RowState:
        """Starts the row's task and records it; a row that cannot have one is recorded
        failed. Raises what a retry of the batch may overcome."""
        if data is None:
            await self._record(run.bulk_id, row_id, RowState.failed, error="row deleted")
            return RowState.failed
        try:
            message = render_message(run.template, data)
        except templating.TemplateError as exc:
            error = f"message_template: {exc}"
            await self._record(run.bulk_id, row_id, RowState.failed, error=error)
            return RowState.failed
        task_id = bulk_task_id(run.bulk_id, row_id)
        try:
            await self._start(run, task_id, message)
        except (ServiceUnavailable, NotFound) as exc:
            # Temporal is down (the batch is retried, and resumes this claimed row), or the
            # agent is gone (the run fails).
            raise as_application_error(exc) from None
        except BatonError as exc:
            await self._record(
                run.bulk_id, row_id, RowState.failed, task_id=task_id, error=exc.message
            )
            return RowState.failed
        await self._record(run.bulk_id, row_id, RowState.started, task_id=task_id)
        return RowState.started

    async def _release(self, bulk_id: str, row_ids: list[int]) -> None:
        """Of the claimed rows still `starting`: those whose task did start are recorded
        started, the others are upcoming again."""
        async with self._sessions.begin() as session:
            await bulk_repo.release_claimed(
                session=session,
                bulk_id=bulk_id,
                task_ids={row_id: bulk_task_id(bulk_id, row_id) for row_id in row_ids},
            )

    # Run as a local activity: one short write as the run's status changes.
    @activity.defn(name="baton.bulk_tasks.set_status")
    async def set_status(self, update: BulkStatusUpdate) -> None:
        async with self._sessions.begin() as session:
            if update.status.is_final:
                await bulk_repo.cancel_upcoming(session=session, bulk_id=update.bulk_id)
            await bulk_repo.set_status(
                session=session,
                bulk_id=update.bulk_id,
                status=update.status,
                waiting_until=update.waiting_until,
                error=update.error,
            )

    async def _start(self, run: _Run, task_id: str, message: str) -> None:
        async with self._sessions() as session:
            agent: Agent = await agent_repo.get_agent(
                session=session, project_id=run.project_id, agent_id=run.agent_id
            )
            await start_agent_task(
                session=session,
                temporal_client=self._client,
                settings=self._settings,
                agent=agent,
                message=message,
                task_id=task_id,
            )

    async def _record(
        self,
        bulk_id: str,
        row_id: int,
        state: RowState,
        *,
        task_id: str | None = None,
        error: str | None = None,
    ) -> None:
        async with self._sessions.begin() as session:
            await bulk_repo.record_row(
                session=session,
                bulk_id=bulk_id,
                row_id=row_id,
                state=state,
                task_id=task_id,
                error=error[:MAX_ERROR_CHARS] if error else None,
            )
