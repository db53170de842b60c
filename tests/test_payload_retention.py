"""Large payloads do not pile up for ever: a blob goes once its workflow has been closed for
longer than Temporal keeps the history that refers to it, and not before."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHandle
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from baton import temporal
from baton.db.payload_store import DatabasePayloadStore
from baton.db.repositories import payload_blobs as blob_repo
from baton.db.tables import PayloadBlob, utcnow
from baton.services import payload_retention
from baton.settings import Settings

BIG = "x" * 300_000


@workflow.defn(name="PayloadHolder")
class PayloadHolder:
    """Holds a large input until released, then ends."""

    def __init__(self) -> None:
        self._released = False

    @workflow.run
    async def run(self, value: str) -> int:
        await workflow.wait_condition(lambda: self._released)
        return len(value)

    @workflow.signal
    def release(self) -> None:
        self._released = True


async def blobs_of(
    session_factory: async_sessionmaker[AsyncSession], workflow_id: str
) -> list[PayloadBlob]:
    async with session_factory() as session:
        found = await session.scalars(
            select(PayloadBlob).where(PayloadBlob.workflow_id == workflow_id)
        )
        return list(found.all())


async def test_blobs_of_workflows_closed_longer_than_the_retention_are_deleted_and_no_others(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
):
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=temporal.data_converter(settings, session_factory),
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    async with Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[PayloadHolder],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handles: dict[str, WorkflowHandle[PayloadHolder, int]] = {}
        for name in ("expired", "recent", "running"):
            handles[name] = await client.start_workflow(
                PayloadHolder.run,
                BIG,
                id=f"payload-holder-{name}-{uuid.uuid4()}",
                task_queue=settings.temporal_task_queue,
            )
        for name in ("expired", "recent"):
            await handles[name].signal(PayloadHolder.release)
            assert await handles[name].result() == len(BIG)
        ids = {name: handle.id for name, handle in handles.items()}
        # The same value, stored for three workflows: each owns its copy.
        assert [len(await blobs_of(session_factory, ids[name])) for name in ids] == [1, 1, 1]

        # Temporal's visibility lists a closed workflow a moment after it closed.
        async with asyncio.timeout(30):
            while True:
                await payload_retention.mark_closed_since(
                    client=client, session_factory=session_factory, since=since
                )
                closed = [
                    (await blobs_of(session_factory, ids[name]))[0].closed_at
                    for name in ("expired", "recent")
                ]
                if all(closed):
                    break
                await asyncio.sleep(0.2)
        recent_close = (await handles["recent"].describe()).close_time
        assert closed[1] == recent_close
        assert (await blobs_of(session_factory, ids["running"]))[0].closed_at is None

        # The expired workflow closed, as its blob records, longer ago than the retention.
        retention = await payload_retention.history_retention(client)
        assert retention > timedelta(0)
        async with session_factory.begin() as session:
            await session.execute(
                update(PayloadBlob)
                .where(PayloadBlob.workflow_id == ids["expired"])
                .values(closed_at=utcnow() - retention - timedelta(minutes=1))
            )
        swept = await payload_retention.sweep(
            client=client, session_factory=session_factory, since=since
        )

        assert swept.deleted == 1
        assert await blobs_of(session_factory, ids["expired"]) == []
        assert len(await blobs_of(session_factory, ids["recent"])) == 1
        # The running workflow's input is still there to be read when it goes on.
        await handles["running"].signal(PayloadHolder.release)
        assert await handles["running"].result() == len(BIG)
        assert await handles["recent"].result() == len(BIG)


async def test_a_blob_stored_again_or_by_a_later_run_of_the_same_id_is_not_taken_as_closed(
    session_factory: async_sessionmaker[AsyncSession],
):
    store = DatabasePayloadStore(session_factory)
    workflow_id = f"embed-set-{uuid.uuid4()}"
    context = StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id=workflow_id)
    )
    await store.store(context, [Payload(data=b"first run")])
    first_run_closed = utcnow()
    async with session_factory.begin() as session:
        marked = await blob_repo.mark_closed(
            session=session, workflow_id=workflow_id, closed_at=first_run_closed
        )
    assert marked == 1

    # The next run under the id stores the same value again, and a value of its own.
    await store.store(context, [Payload(data=b"first run"), Payload(data=b"second run")])
    async with session_factory.begin() as session:
        marked = await blob_repo.mark_closed(
            session=session, workflow_id=workflow_id, closed_at=first_run_closed
        )
    assert marked == 0
    blobs = await blobs_of(session_factory, workflow_id)
    assert sorted(Payload.FromString(b.data).data for b in blobs) == [b"first run", b"second run"]
    assert [b.closed_at for b in blobs] == [None, None]
