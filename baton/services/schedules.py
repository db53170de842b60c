"""Schedules of an agent or a workforce as Temporal Schedules: `baton-schedule-<id>`, whose
action starts `AgentTaskWorkflow` (or `WorkforceWorkflow`) directly. Temporal owns the
timing, and the workflow creates its own task row when it fires, loading the agent (or the
workforce) as it is at that moment. The row in Baton is what a project manages the schedule
by.

The workflows are named by their registered names, so this library does not import the
workflow layer (tests/test_services.py checks them against the workflows)."""

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
from baton.db.repositories import workforces as workforce_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import AgentSchedule
from baton.domain.tasks import AgentTaskInput, TaskStatus
from baton.domain.workforce_tasks import WORKFORCE_TASK_KIND, WorkforceTaskInput
from baton.errors import BatonError, Conflict, InvalidInput, ServiceUnavailable
from baton.services.tasks import AGENT_TASK_WORKFLOW, task_params
from baton.services.workforce_tasks import WORKFORCE_WORKFLOW, check_params
from baton.settings import Settings
from baton.temporal import (
    BATON_AGENT,
    BATON_KIND,
    BATON_PROJECT,
    BATON_WORKFORCE,
    run_search_attributes,
)

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
    target: Target,
    cron: str,
    timezone: str,
    message: str,
    params: dict[str, Any],
) -> AgentSchedule:
    """The schedule's row and its Temporal Schedule, both or neither. `params` are checked
    against the agent's typed params (defaults applied), or those of the workforce's agent
    nodes."""
    schedule = await trigger_repo.create_schedule(
        session=session,
        target=target,
        cron=cron,
        timezone=timezone,
        message=message,
        params=await _checked_params(session, target, params),
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


async def _checked_params(
    session: AsyncSession, target: Target, params: dict[str, Any]
) -> dict[str, Any]:
    if target.workforce_id is not None:
        workforce = await workforce_repo.get_workforce(
            session=session, project_id=target.project_id, workforce_id=target.workforce_id
        )
        spec = workforce_repo.workforce_spec(workforce)
        await check_params(session, target.project_id, spec, params)
        return params  # each agent node takes its own, with its defaults, as a task begins
    assert target.agent_id is not None
    agent = await agent_repo.get_agent(
        session=session, project_id=target.project_id, agent_id=target.agent_id
    )
    return task_params(agent_repo.agent_spec(agent), params)


def temporal_schedule(schedule: AgentSchedule, settings: Settings) -> Schedule:
    """Each run gets its own workflow id (Temporal appends the fire time to `task-schedule-
    <id>` or `workforce-task-schedule-<id>`) and creates its own task, loading the agent (or
    the workforce) as it is at that moment."""
    return Schedule(
        action=_start_action(schedule, settings),
        spec=ScheduleSpec(cron_expressions=[schedule.cron], time_zone_name=schedule.timezone),
        # A task may stay open (idle, waiting for a message), which must not hold back the
        # next run.
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=CATCHUP_WINDOW
        ),
        state=ScheduleState(paused=schedule.paused),
    )


def _start_action(schedule: AgentSchedule, settings: Settings) -> ScheduleActionStartWorkflow:
    start: AgentTaskInput | WorkforceTaskInput
    if schedule.workforce_id is not None:
        workflow, run_prefix, kind = WORKFORCE_WORKFLOW, "workforce-task", WORKFORCE_TASK_KIND
        start = WorkforceTaskInput(
            task_id="",
            project_id=schedule.project_id,
            workforce_id=schedule.workforce_id,
            workforce_version=0,
            workforce=None,
            message=schedule.message,
            params=schedule.params or {},
        )
    else:
        assert schedule.agent_id is not None
        workflow, run_prefix, kind = AGENT_TASK_WORKFLOW, "task", "agent-task"
        start = AgentTaskInput(
            task_id="",
            project_id=schedule.project_id,
            agent_id=schedule.agent_id,
            agent=None,
            message=schedule.message,
            params=schedule.params or {},
        )
    return ScheduleActionStartWorkflow(
        workflow,
        start,
        id=f"{run_prefix}-schedule-{schedule.id}",
        task_queue=settings.temporal_task_queue,
        typed_search_attributes=run_search_attributes(
            project_id=schedule.project_id,
            kind=kind,
            status=TaskStatus.queued.value,
            agent_id=schedule.agent_id,
            workforce_id=schedule.workforce_id,
        ),
        static_summary=f"scheduled: {schedule.cron} ({schedule.timezone})",
    )


def _schedule_search_attributes(schedule: AgentSchedule) -> TypedSearchAttributes:
    if schedule.workforce_id is not None:
        owner, kind = SearchAttributePair(BATON_WORKFORCE, schedule.workforce_id), "workforce"
    else:
        assert schedule.agent_id is not None
        owner, kind = SearchAttributePair(BATON_AGENT, schedule.agent_id), "agent"
    return TypedSearchAttributes(
        [
            SearchAttributePair(BATON_PROJECT, schedule.project_id),
            owner,
            SearchAttributePair(BATON_KIND, f"{kind}-schedule"),
        ]
    )


async def _create_in_temporal(client: Client, settings: Settings, schedule: AgentSchedule) -> None:
    try:
        await client.create_schedule(
            temporal_schedule_id(schedule),
            temporal_schedule(schedule, settings),
            search_attributes=_schedule_search_attributes(schedule),
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
