"""Triggers that start tasks of an agent or a workforce without a person: webhooks and
schedules, under `/agents/{agent_id}/...` and `/workforces/{workforce_id}/...` alike.

A webhook is a secret URL (`/api/hooks/<token>`) that turns any JSON body into a task; the
token is the credential, so that route takes no Authorization header. A schedule is a
Temporal Schedule (baton/services/schedules.py builds and changes it); these routes are its
HTTP face."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from fastapi import APIRouter, Depends, Request, status
from temporalio.client import Client

from api.deps import (
    AgentDep,
    Editor,
    PageDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    WorkforceDep,
    get_project,
)
from api.limits import bounded_definition
from api.schemas.paging import Page
from api.schemas.triggers import (
    MAX_MESSAGE_LENGTH,
    PAYLOAD,
    HookAccepted,
    ScheduleCreate,
    SchedulePublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)
from api.templates import api_budget, off_loop
from baton import templating
from baton.db.repositories import triggers as trigger_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import AgentSchedule, AgentWebhook, Task
from baton.domain.tasks import TaskStatus
from baton.errors import BatonError, InvalidInput
from baton.security import new_token
from baton.services import schedules as schedule_service
from baton.services.triggers import start_target_task
from baton.settings import Settings

WEBHOOK_TOKEN_PREFIX = "bthk_"
MAX_PAYLOAD_BYTES = 1024 * 1024


class PayloadTooLarge(BatonError):
    code = "payload_too_large"
    status_code = 413


async def agent_target(agent: AgentDep) -> Target:
    return Target(project_id=agent.project_id, agent_id=agent.id)


async def workforce_target(workforce: WorkforceDep) -> Target:
    return Target(project_id=workforce.project_id, workforce_id=workforce.id)


_AGENT = Depends(agent_target)
_WORKFORCE = Depends(workforce_target)
hooks = APIRouter(prefix="/api/hooks", tags=["webhooks"])


# Webhooks

# `Depends(agent_target)` or `Depends(workforce_target)`: the target the path names.
TargetOf = Any


def webhook_routes(prefix: str, target_of: TargetOf) -> APIRouter:
    """Create, list and revoke the webhooks of the target `target_of` finds in the path."""
    router = APIRouter(
        prefix=f"/api/v1/projects/{{project_id}}/{prefix}/webhooks",
        tags=["webhooks"],
        dependencies=[Depends(get_project)],
    )

    @router.post(
        "", status_code=status.HTTP_201_CREATED, dependencies=[Depends(bounded_definition)]
    )
    async def create_webhook(
        body: WebhookCreate,
        _: Editor,
        session: SessionDep,
        settings: SettingsDep,
        target: Target = target_of,
    ) -> WebhookCreated:
        token = new_token(WEBHOOK_TOKEN_PREFIX)
        webhook = await trigger_repo.create_webhook(
            session=session,
            target=target,
            token=token,
            message_template=body.message_template,
            dedupe_key_template=body.dedupe_key_template,
            params_template=body.params_template,
        )
        return WebhookCreated(
            **WebhookPublic.of(webhook).model_dump(),
            url=f"{settings.public_api_url.rstrip('/')}{hooks.prefix}/{token}",
            token=token,
        )

    @router.get("")
    async def list_webhooks(
        _: Viewer, session: SessionDep, page: PageDep, target: Target = target_of
    ) -> Page[WebhookPublic]:
        rows = await trigger_repo.list_live(
            session=session, table=AgentWebhook, target=target, page=page
        )
        return Page[WebhookPublic].of(rows, WebhookPublic.of)

    @router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def revoke_webhook(
        webhook_id: str, _: Editor, session: SessionDep, target: Target = target_of
    ) -> None:
        await trigger_repo.revoke(
            session=session, table=AgentWebhook, target=target, trigger_id=webhook_id
        )

    return router


@hooks.post(
    "/{token}",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def receive_hook(
    token: str,
    request: Request,
    session: SessionDep,
    temporal_client: TemporalDep,
    settings: SettingsDep,
) -> HookAccepted:
    """Any JSON body (up to 1 MB) becomes `payload` in the webhook's templates. With a dedupe
    key, the same key starts one task however often it arrives."""
    webhook = await trigger_repo.find_by_token(session=session, table=AgentWebhook, token=token)
    payload = await _read_json(request)
    templates = HookTemplates(
        message=webhook.message_template,
        dedupe_key=webhook.dedupe_key_template,
        params=dict(webhook.params_template or {}),
    )
    message, key, params = await off_loop(lambda: _render_hook(templates, payload))
    task_id = str(uuid.uuid5(uuid.UUID(webhook.id), key)) if key else None
    deduplicated = task_id is not None and await session.get(Task, task_id) is not None
    task = await start_target_task(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        target=Target.of(webhook),
        message=message,
        task_id=task_id,
        params=params,
    )
    return HookAccepted(
        task_id=task.id,
        workflow_id=task.workflow_id,
        status=TaskStatus(task.status),
        deduplicated=deduplicated,
    )


async def read_body(request: Request) -> bytes:
    """The request's body, refused (413) past MAX_PAYLOAD_BYTES."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PAYLOAD_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PAYLOAD_BYTES:
            raise _too_large()
    return bytes(body)


async def _read_json(request: Request) -> Any:
    body = await read_body(request)
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {MAX_PAYLOAD_BYTES} bytes")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


@dataclass(frozen=True)
class HookTemplates:
    message: str
    dedupe_key: str | None
    params: dict[str, str]


def _render_hook(templates: HookTemplates, payload: Any) -> tuple[str, str | None, dict[str, Any]]:
    """The task's message, dedupe key and params; in a render thread, all on one budget."""
    budget = api_budget("the webhook's templates")

    def render(template: str, field: str, *, text: bool = True) -> Any:
        try:
            if text:
                return templating.render_text(template, {PAYLOAD: payload}, budget=budget)
            # A lone `{{ payload.x }}` keeps the value's JSON type, as a typed param needs.
            return templating.render(template, {PAYLOAD: payload}, budget=budget)
        except templating.TemplateError as exc:
            raise InvalidInput(
                f"the webhook's {field} failed on this payload: {exc}", details={"field": field}
            ) from exc

    message = render(templates.message, "message_template")
    if not message.strip():
        raise InvalidInput("the message_template rendered an empty message for this payload")
    if len(message) > MAX_MESSAGE_LENGTH:
        raise InvalidInput(f"the rendered message is longer than {MAX_MESSAGE_LENGTH} characters")
    key = None
    if templates.dedupe_key:
        key = render(templates.dedupe_key, "dedupe_key_template").strip() or None
    params = {
        name: render(template, f"params_template.{name}", text=False)
        for name, template in templates.params.items()
    }
    return message, key, params


# Schedules


def schedule_routes(prefix: str, target_of: TargetOf) -> APIRouter:
    """Create, list, pause, resume and delete the schedules of the target `target_of` finds
    in the path."""
    router = APIRouter(
        prefix=f"/api/v1/projects/{{project_id}}/{prefix}/schedules",
        tags=["schedules"],
        dependencies=[Depends(get_project)],
    )

    async def schedule_of(
        schedule_id: str, session: SessionDep, target: Target = target_of
    ) -> AgentSchedule:
        return await trigger_repo.get_schedule(
            session=session, target=target, schedule_id=schedule_id
        )

    found: Any = Depends(schedule_of)

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create_schedule(
        body: ScheduleCreate,
        _: Editor,
        session: SessionDep,
        temporal_client: TemporalDep,
        settings: SettingsDep,
        target: Target = target_of,
    ) -> SchedulePublic:
        schedule = await schedule_service.create_schedule(
            session=session,
            temporal_client=temporal_client,
            settings=settings,
            target=target,
            cron=body.cron,
            timezone=body.timezone,
            message=body.message,
            params=body.params,
        )
        next_run = await schedule_service.next_run(temporal_client, schedule)
        return _view(schedule, settings, next_run)

    @router.get("")
    async def list_schedules(
        _: Viewer,
        session: SessionDep,
        temporal_client: TemporalDep,
        settings: SettingsDep,
        page: PageDep,
        target: Target = target_of,
    ) -> Page[SchedulePublic]:
        """Each with its next run, which Temporal is asked for."""
        rows = await trigger_repo.list_schedules(session=session, target=target, page=page)
        next_runs = await asyncio.gather(
            *(schedule_service.next_run(temporal_client, s) for s in rows.items)
        )
        return Page[SchedulePublic](
            items=[_view(s, settings, n) for s, n in zip(rows.items, next_runs, strict=True)],
            next_cursor=rows.next_cursor,
        )

    @router.post("/{schedule_id}/pause")
    async def pause_schedule(
        _: Editor,
        temporal_client: TemporalDep,
        settings: SettingsDep,
        schedule: AgentSchedule = found,
    ) -> SchedulePublic:
        return await _set_paused(temporal_client, settings, schedule, paused=True)

    @router.post("/{schedule_id}/resume")
    async def resume_schedule(
        _: Editor,
        temporal_client: TemporalDep,
        settings: SettingsDep,
        schedule: AgentSchedule = found,
    ) -> SchedulePublic:
        return await _set_paused(temporal_client, settings, schedule, paused=False)

    @router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_schedule(
        _: Editor,
        session: SessionDep,
        temporal_client: TemporalDep,
        schedule: AgentSchedule = found,
    ) -> None:
        await schedule_service.delete_in_temporal(temporal_client, schedule)
        await session.delete(schedule)

    return router


async def _set_paused(
    client: Client, settings: Settings, schedule: AgentSchedule, *, paused: bool
) -> SchedulePublic:
    await schedule_service.set_paused(client, schedule, paused=paused)
    return _view(schedule, settings, await schedule_service.next_run(client, schedule))


def _view(
    schedule: AgentSchedule, settings: Settings, next_run_at: datetime | None
) -> SchedulePublic:
    schedule_id = schedule_service.temporal_schedule_id(schedule)
    ui = settings.temporal_ui_url.rstrip("/")
    return SchedulePublic(
        id=schedule.id,
        agent_id=schedule.agent_id,
        workforce_id=schedule.workforce_id,
        cron=schedule.cron,
        timezone=schedule.timezone,
        message=schedule.message,
        params=schedule.params or {},
        paused=schedule.paused,
        next_run_at=next_run_at,
        temporal_schedule_id=schedule_id,
        temporal_ui_url=f"{ui}/namespaces/{settings.temporal_namespace}/schedules/{schedule_id}",
        created_at=schedule.created_at,
    )


router = APIRouter()
for _part in (
    webhook_routes("agents/{agent_id}", _AGENT),
    webhook_routes("workforces/{workforce_id}", _WORKFORCE),
    hooks,
    schedule_routes("agents/{agent_id}", _AGENT),
    schedule_routes("workforces/{workforce_id}", _WORKFORCE),
):
    router.include_router(_part)
