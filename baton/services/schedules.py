"""An agent's schedules as Temporal Schedules: `baton-schedule-<id>`, whose action starts
`AgentTaskWorkflow` directly. Temporal owns the timing, and the workflow creates its own task
row when it fires. The row in Baton is what a project manages the schedule by.

The workflow is named by its registered name, so this library does not import the workflow
layer (tests/test_services.py checks it against `AgentTaskWorkflow`)."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from baton.db.repositories import agents as agent_repo
from baton.db.repositories import triggers as trigger_repo
from baton.db.tables import Agent, AgentSchedule
from baton.domain.tasks import AgentTaskInput, TaskStatus
from baton.errors import BatonError, Conflict, InvalidInput, ServiceUnavailable
from baton.services.tasks import AGENT_TASK_WORKFLOW, task_params
from baton.settings import Settings
from baton.temporal import BATON_AGENT, BATON_KIND, BATON_PROJECT, run_search_attributes

logger = logging.getLogger("baton.schedules")

# Runs missed while Temporal was down are made up within this window and dropped beyond
# it: a report late by minutes is still wanted, a week of them at once is not.
CATCHUP_WINDOW = timedelta(hours=1)
DESCRIBE_TIMEOUT = timedelta(seconds=5)


async def create_schedule(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    agent: Agent,
    cron: str,
    timezone: str,
    message: str,
    params: dict[str, Any],
) -> AgentSchedule:
    """The schedule's row and its Temporal Schedule, both or neither. `params` are checked
    against the agent's typed params (defaults applied)."""
    schedule = await trigger_repo.create_schedule(
        session=session,
        project_id=agent.project_id,
        agent_id=agent.id,
        cron=cron,
        timezone=timezone,
        message=message,
        params=task_params(agent_repo.agent_spec(agent), params),
    )
    # The row is only flushed: if Temporal refuses the cron or is down, the request fails
    # and the session rolls it back. Once Temporal has the schedule, a failed commit must
    # not leave it firing with no row to manage it by.
    await _create_in_temporal(temporal_client, settings, schedule)
    try:
        await session.commit()
    except BaseException:
        with contextlib.suppress(BatonError):
            await delete_in_temporal(temporal_client, schedule)
        raise
    return schedule


async def set_paused(client: Client, schedule: AgentSchedule, *, paused: bool) -> None:
    handle = client.get_schedule_handle(temporal_schedule_id(schedule))
    try:
        if paused:
            await handle.pause(note="paused through the Baton API")
        else:
            await handle.unpause(note="resumed through the Baton API")
    except (RPCError, RuntimeError) as exc:
        _raise_temporal_error(exc, schedule)
    schedule.paused = paused


def temporal_schedule_id(schedule: AgentSchedule) -> str:
    return f"baton-schedule-{schedule.id}"


def temporal_schedule(schedule: AgentSchedule, settings: Settings) -> Schedule:
    """Each run gets its own workflow id (Temporal appends the fire time to `task-schedule-
    <id>`) and creates its own task, loading the agent as it is at that moment."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AGENT_TASK_WORKFLOW,
            AgentTaskInput(
                task_id="",
                project_id=schedule.project_id,
                agent_id=schedule.agent_id,
                agent=None,
                message=schedule.message,
                params=schedule.params or {},
            ),
            id=f"task-schedule-{schedule.id}",
            task_queue=settings.temporal_task_queue,
            typed_search_attributes=run_search_attributes(
                project_id=schedule.project_id,
                kind="agent-task",
                status=TaskStatus.queued.value,
                agent_id=schedule.agent_id,
            ),
            static_summary=f"scheduled: {schedule.cron} ({schedule.timezone})",
        ),
        spec=ScheduleSpec(cron_expressions=[schedule.cron], time_zone_name=schedule.timezone),
        # A task may stay open (idle, waiting for a message), which must not hold back the
        # next run.
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=CATCHUP_WINDOW
        ),
        state=ScheduleState(paused=schedule.paused),
    )


async def _create_in_temporal(client: Client, settings: Settings, schedule: AgentSchedule) -> None:
    try:
        await client.create_schedule(
            temporal_schedule_id(schedule),
            temporal_schedule(schedule, settings),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(BATON_PROJECT, schedule.project_id),
                    SearchAttributePair(BATON_AGENT, schedule.agent_id),
                    SearchAttributePair(BATON_KIND, "agent-schedule"),
                ]
            ),
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            # The time zone was checked before; what Temporal refuses is the cron string.
            raise InvalidInput(
                f"invalid cron: {exc.message}",
                details=[{"loc": ["body", "cron"], "msg": exc.message, "type": "value_error"}],
            ) from exc
        _raise_temporal_error(exc, schedule)
    except RuntimeError as exc:
        _raise_temporal_error(exc, schedule)


async def delete_in_temporal(client: Client, schedule: AgentSchedule) -> None:
    try:
        await client.get_schedule_handle(temporal_schedule_id(schedule)).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            _raise_temporal_error(exc, schedule)
    except RuntimeError as exc:
        _raise_temporal_error(exc, schedule)


async def next_run(client: Client, schedule: AgentSchedule) -> datetime | None:
    """The next fire time, as Temporal computes it; a listing still answers without it."""
    if schedule.paused:
        return None
    handle = client.get_schedule_handle(temporal_schedule_id(schedule))
    try:
        description = await handle.describe(rpc_timeout=DESCRIBE_TIMEOUT)
    except (RPCError, RuntimeError) as exc:
        logger.warning("could not describe %s: %s", handle.id, exc)
        return None
    upcoming = description.info.next_action_times
    return upcoming[0] if upcoming else None


def _raise_temporal_error(exc: RPCError | RuntimeError, schedule: AgentSchedule) -> NoReturn:
    """`RuntimeError` is what a lazy client raises when it cannot connect."""
    schedule_id = temporal_schedule_id(schedule)
    if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
        raise Conflict(
            f"the Temporal schedule {schedule_id} is gone; delete this schedule and create it again"
        ) from exc
    logger.warning("Temporal call for %s failed: %s", schedule_id, exc)
    raise ServiceUnavailable(
        "Temporal is unavailable; the schedule was not changed",
        details={"temporal_schedule_id": schedule_id},
    ) from exc
