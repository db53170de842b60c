"""An organisation's plan keeps its history `history_retention_days`: the worker deletes,
every so often, the tasks (with their messages and events) and tool runs (with their steps)
that finished longer ago. Work still going on is never deleted, however old; the credits
ledger and the audit log are kept whatever the plan. Temporal keeps its own histories as
long as its namespace's retention says.

Deletes go in batches, at most MAX_BATCHES per organisation and kind a pass, so a backlog
drains over several passes without holding the database for long."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import history as history_repo
from baton.db.tables import utcnow
from baton.domain.credits import PlanBook

logger = logging.getLogger("baton.history_retention")

DELETE_BATCH = 200
MAX_BATCHES = 10
# How often the worker deletes expired history.
INTERVAL_S = 3600.0

Delete = Callable[..., Awaitable[int]]


@dataclass(frozen=True)
class Expired:
    tasks: int
    tool_runs: int


async def delete_expired(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    plans: PlanBook,
    now: datetime | None = None,
) -> Expired:
    """Deletes, for every organisation whose plan has a `history_retention_days`, its
    finished tasks and tool runs older than that."""
    now = now or utcnow()
    async with session_factory() as session:
        orgs = await history_repo.org_plans(session=session)
    tasks = runs = 0
    for org_id, plan in orgs.items():
        if not plans.knows(plan):
            # A plan the plans file no longer has: its history is kept, not deleted under the
            # default plan's retention because of a mistake in the file.
            logger.warning("organisation %d is on an unknown plan %r", org_id, plan)
            continue
        days = plans.plan(plan).history_retention_days
        if days is None:
            continue
        before = now - timedelta(days=days)
        tasks += await _in_batches(
            session_factory, history_repo.delete_finished_tasks, org_id, before
        )
        runs += await _in_batches(
            session_factory, history_repo.delete_finished_runs, org_id, before
        )
    if tasks or runs:
        logger.info(
            "history past its plan's retention: %d tasks, %d tool runs deleted", tasks, runs
        )
    return Expired(tasks=tasks, tool_runs=runs)


async def _in_batches(
    session_factory: async_sessionmaker[AsyncSession], delete: Delete, org_id: int, before: datetime
) -> int:
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with session_factory.begin() as session:
            batch = await delete(session=session, org_id=org_id, before=before, limit=DELETE_BATCH)
        deleted += batch
        if batch < DELETE_BATCH:
            break
    return deleted


async def delete_forever(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    plans: PlanBook,
    interval: float = INTERVAL_S,
) -> None:
    """The worker's loop: a pass now, then one every `interval`."""
    while True:
        try:
            await delete_expired(session_factory=session_factory, plans=plans)
        except Exception:  # the database away: the next pass deletes what this one did not
            logger.warning("could not delete expired history", exc_info=True)
        await asyncio.sleep(interval)
