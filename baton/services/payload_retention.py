"""Large payloads go when Temporal forgets the history that refers to them.

A blob in `payload_blobs` belongs to one workflow (see baton/db/payload_store.py). The worker
sweeps: it reads which workflows Temporal closed since the sweep before and marks their blobs
with the close time, then deletes blobs whose workflow closed longer ago than the namespace's
history retention. Deletes go in batches, and a pass deletes at most MAX_BATCHES of them, so a
backlog drains over several passes without holding the database for long."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from baton.db.repositories import payload_blobs as blob_repo
from baton.db.tables import utcnow

logger = logging.getLogger("baton.payload_retention")

DELETE_BATCH = 200
MAX_BATCHES = 10
# Closed workflows are looked up this many ids at a time.
ID_CHUNK = 500
# A run that continued as new lives on under the same id: only these statuses end a workflow.
_CLOSED_QUERY = (
    "ExecutionStatus IN ('Completed', 'Failed', 'Canceled', 'Terminated', 'TimedOut') "
    "AND CloseTime > '{since}'"
)


@dataclass(frozen=True)
class Swept:
    marked: int
    deleted: int


async def history_retention(client: Client) -> timedelta:
    """How long the client's namespace keeps a closed workflow's history."""
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


async def sweep(
    *, client: Client, session_factory: async_sessionmaker[AsyncSession], since: datetime
) -> Swept:
    """Marks the blobs of workflows closed after `since`, then deletes expired ones."""
    marked = await mark_closed_since(client=client, session_factory=session_factory, since=since)
    retention = await history_retention(client)
    deleted = await delete_expired(session_factory=session_factory, before=utcnow() - retention)
    if marked or deleted:
        logger.info("payload blobs: %d marked closed, %d deleted", marked, deleted)
    return Swept(marked=marked, deleted=deleted)


async def mark_closed_since(
    *, client: Client, session_factory: async_sessionmaker[AsyncSession], since: datetime
) -> int:
    """Records each workflow's close time on its blobs; how many blobs it marked."""
    marked = 0
    closed: dict[str, datetime] = {}
    async for execution in client.list_workflows(_CLOSED_QUERY.format(since=since.isoformat())):
        if execution.close_time is not None:
            closed[execution.id] = execution.close_time
        if len(closed) >= ID_CHUNK:
            marked += await _mark(session_factory, closed)
            closed = {}
    return marked + await _mark(session_factory, closed)


async def _mark(
    session_factory: async_sessionmaker[AsyncSession], closed: dict[str, datetime]
) -> int:
    if not closed:
        return 0
    marked = 0
    async with session_factory.begin() as session:
        # Most closed workflows stored no blob: one query finds the few that did.
        owners = await blob_repo.owners_with_open_blobs(session=session, workflow_ids=[*closed])
        for workflow_id in owners:
            marked += await blob_repo.mark_closed(
                session=session, workflow_id=workflow_id, closed_at=closed[workflow_id]
            )
    return marked


async def delete_expired(
    *, session_factory: async_sessionmaker[AsyncSession], before: datetime
) -> int:
    """Deletes blobs whose workflow closed before `before`, a bounded number per call."""
    deleted = 0
    for _ in range(MAX_BATCHES):
        async with session_factory.begin() as session:
            batch = await blob_repo.delete_closed_before(
                session=session, before=before, limit=DELETE_BATCH
            )
        deleted += batch
        if batch < DELETE_BATCH:
            break
    return deleted
