"""A knowledge set's synced sources: the row in Baton and its Temporal Schedule
(`knowledge-source-<id>`, every `interval_minutes`, first run at once) whose action starts
`KnowledgeSourceSyncWorkflow`; a sync now; deleting a source with its rows.

The workflow is started by its registered name, so this library does not import the
workflow layer (tests/test_services.py checks it against the workflow)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import timedelta
from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from baton import temporal
from baton.db.repositories import knowledge_sources as source_repo
from baton.db.tables import KnowledgeSet, KnowledgeSource
from baton.domain.knowledge_sources import (
    KnowledgeSourceSpec,
    SourceSyncInput,
    source_schedule_id,
    source_sync_workflow_id,
)
from baton.errors import BatonError, ServiceUnavailable
from baton.integrations import http
from baton.settings import Settings

logger = logging.getLogger("baton.knowledge.sources")

# The name workflows.knowledge_sources.KnowledgeSourceSyncWorkflow is registered by.
SOURCE_SYNC_WORKFLOW = "KnowledgeSourceSyncWorkflow"
SOURCE_KIND = "knowledge-source-sync"
# Syncs missed while Temporal was down: the next one catches up, one is enough.
CATCHUP_WINDOW = timedelta(minutes=10)


async def create_source(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    knowledge_set: KnowledgeSet,
    spec: KnowledgeSourceSpec,
) -> KnowledgeSource:
    """The source's row and its schedule, both or neither. A URL the egress guard refuses
    (a private or loopback address, the metadata service) is refused here, with 422; every
    fetch is checked again as it connects."""
    await http.check_destination(spec.url, policy=http.EgressPolicy.from_settings(settings))
    source = await source_repo.create_source(
        session=session, knowledge_set=knowledge_set, spec=spec
    )
    # As an agent's schedule: once Temporal has the schedule, a failed commit must not
    # leave it firing with no row to manage it by.
    await _create_schedule(temporal_client, settings, source)
    try:
        await session.commit()
    except BaseException:
        with contextlib.suppress(BatonError):
            await _delete_schedule(temporal_client, source.id)
        raise
    return source


async def sync_now(*, temporal_client: Client, settings: Settings, source: KnowledgeSource) -> str:
    """Starts a sync of the source; its workflow id."""
    workflow_id = f"{source_sync_workflow_id(source.id)}-{uuid.uuid4().hex[:12]}"
    try:
        await temporal_client.start_workflow(
            SOURCE_SYNC_WORKFLOW,
            SourceSyncInput(project_id=source.project_id, source_id=source.id),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=temporal.run_search_attributes(
                project_id=source.project_id, kind=SOURCE_KIND, status="running"
            ),
            static_summary=f"sync {source.kind} {http_host(source.url)}",
        )
    except (RPCError, RuntimeError) as exc:
        _unavailable(exc, source.id)
    return workflow_id


async def delete_source(
    *,
    session: AsyncSession,
    temporal_client: Client,
    knowledge_set: KnowledgeSet,
    source: KnowledgeSource,
) -> int:
    """Stops its schedule, then deletes the source and every row it wrote; how many rows."""
    await _delete_schedule(temporal_client, source.id)
    return await source_repo.delete_source(
        session=session, knowledge_set=knowledge_set, source=source
    )


async def delete_set_sources(
    *, session: AsyncSession, temporal_client: Client, knowledge_set: KnowledgeSet
) -> None:
    """Stops the schedules of a set that is being deleted (its sources go with it)."""
    for source_id in await source_repo.source_ids_of_set(session=session, set_id=knowledge_set.id):
        await _delete_schedule(temporal_client, source_id)


def temporal_schedule(source: KnowledgeSource, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SOURCE_SYNC_WORKFLOW,
            SourceSyncInput(project_id=source.project_id, source_id=source.id),
            id=source_sync_workflow_id(source.id),
            task_queue=settings.temporal_task_queue,
            typed_search_attributes=temporal.run_search_attributes(
                project_id=source.project_id, kind=SOURCE_KIND, status="running"
            ),
            static_summary=f"scheduled sync of {source.kind} {http_host(source.url)}",
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=source.interval_minutes))]
        ),
        # A slow sync is not started twice over itself.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
    )


def http_host(url: str) -> str:
    """The URL's host, for summaries: its path and query may say more than the UI should."""
    return url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]


async def _create_schedule(client: Client, settings: Settings, source: KnowledgeSource) -> None:
    try:
        await client.create_schedule(
            source_schedule_id(source.id),
            temporal_schedule(source, settings),
            trigger_immediately=True,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(temporal.BATON_PROJECT, source.project_id),
                    SearchAttributePair(temporal.BATON_KIND, "knowledge-source-schedule"),
                ]
            ),
        )
    except (RPCError, RuntimeError) as exc:
        _unavailable(exc, source.id)


async def _delete_schedule(client: Client, source_id: str) -> None:
    try:
        await client.get_schedule_handle(source_schedule_id(source_id)).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            _unavailable(exc, source_id)
    except RuntimeError as exc:
        _unavailable(exc, source_id)


def _unavailable(exc: RPCError | RuntimeError, source_id: str) -> NoReturn:
    """`RuntimeError` is what a lazy client raises when it cannot connect."""
    logger.warning("Temporal call for source %s failed: %s", source_id, exc)
    raise ServiceUnavailable(
        "Temporal is unavailable; the source was not changed",
        details={"temporal_schedule_id": source_schedule_id(source_id)},
    ) from exc
