"""Slack events URLs: an agent or a workforce answers in Slack. `POST .../slack` with a
project's Slack integration gives a secret URL (`/api/hooks/slack/<token>`) to enter as the
Slack app's Event Subscriptions Request URL; mentions of the bot and direct messages then
start tasks, one per Slack thread, and the answers are posted in the thread
(baton/services/slack_events.py).

The events route takes no Authorization header: the token finds the trigger, and Slack's
signature of the body with the app's signing secret (less than five minutes old) proves the
sender; anything else is a 401 before the body is read as JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, status

from api.deps import (
    Editor,
    PageDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
)
from api.routes.triggers import _AGENT, _WORKFORCE, TargetOf, hooks, read_body
from api.schemas.paging import Page
from api.schemas.triggers import SlackTriggerCreate, SlackTriggerCreated, SlackTriggerPublic
from baton.db.repositories import integrations as integration_repo
from baton.db.repositories import slack_triggers as slack_repo
from baton.db.repositories import triggers as trigger_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import Integration, SlackTrigger
from baton.errors import InvalidInput, NotFound, Unauthenticated
from baton.integrations import http, slack
from baton.security import SecretBox, new_token
from baton.services.slack_events import handle_event

SLACK_TOKEN_PREFIX = "btsl_"
SLACK_HOOKS = f"{hooks.prefix}/slack"


def slack_trigger_routes(prefix: str, target_of: TargetOf) -> APIRouter:
    """Create, list and revoke the Slack events URLs of the target `target_of` finds."""
    router = APIRouter(
        prefix=f"/api/v1/projects/{{project_id}}/{prefix}/slack",
        tags=["slack"],
        dependencies=[Depends(get_project)],
    )

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create_slack_trigger(
        body: SlackTriggerCreate,
        _: Editor,
        session: SessionDep,
        settings: SettingsDep,
        target: Target = target_of,
    ) -> SlackTriggerCreated:
        row = await integration_repo.check_slack_reference(
            session=session,
            project_id=target.project_id,
            name=body.integration,
            field="integration",
        )
        token = new_token(SLACK_TOKEN_PREFIX)
        trigger = await slack_repo.create_trigger(
            session=session, target=target, integration_id=row.id, token=token
        )
        return SlackTriggerCreated(
            **SlackTriggerPublic.of(trigger).model_dump(),
            url=f"{settings.public_api_url.rstrip('/')}{SLACK_HOOKS}/{token}",
        )

    @router.get("")
    async def list_slack_triggers(
        _: Viewer, session: SessionDep, page: PageDep, target: Target = target_of
    ) -> Page[SlackTriggerPublic]:
        rows = await trigger_repo.list_live(
            session=session, table=SlackTrigger, target=target, page=page
        )
        return Page[SlackTriggerPublic].of(rows, SlackTriggerPublic.of)

    @router.delete("/{trigger_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def revoke_slack_trigger(
        trigger_id: str, _: Editor, session: SessionDep, target: Target = target_of
    ) -> None:
        await trigger_repo.revoke(
            session=session, table=SlackTrigger, target=target, trigger_id=trigger_id
        )

    return router


events = APIRouter(prefix=SLACK_HOOKS, tags=["slack"])


@events.post(
    "/{token}",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def receive_slack_event(
    token: str,
    request: Request,
    session: SessionDep,
    temporal_client: TemporalDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Slack's Events API: `url_verification` is answered with its challenge; an
    `event_callback` is acted on (a task started or continued) and answered at once."""
    trigger = await trigger_repo.find_by_token(session=session, table=SlackTrigger, token=token)
    row = await session.get(Integration, trigger.integration_id)
    if row is None:
        raise NotFound("no Slack trigger at this URL: its integration was deleted")
    box: SecretBox = request.app.state.secret_box
    app = integration_repo.reveal_slack_app(
        box=box, row=row, egress=http.EgressPolicy.from_settings(settings)
    )
    body = await read_body(request)
    refused = slack.signed_by_slack(
        app,
        body=body,
        timestamp=request.headers.get("x-slack-request-timestamp"),
        signature=request.headers.get("x-slack-signature"),
    )
    if refused is not None:
        raise Unauthenticated(f"not a request from Slack: {refused}")
    payload = _payload(body)
    if payload.get("type") == "url_verification":
        return {"challenge": str(payload.get("challenge", ""))}
    event, event_id = payload.get("event"), payload.get("event_id")
    if payload.get("type") != "event_callback" or not isinstance(event, dict):
        return {"ok": True, "done": "ignored"}
    if not isinstance(event_id, str) or not event_id:
        raise InvalidInput("event_id: an event_callback carries Slack's event_id")
    done = await handle_event(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        trigger=trigger,
        event_id=event_id,
        event=event,
        bot_user_id=_bot_user_id(payload),
    )
    return {"ok": True, "done": done}


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("the body is not a JSON object")
    return payload


def _bot_user_id(payload: dict[str, Any]) -> str | None:
    """The app's bot user, which Slack names in each event's `authorizations`."""
    authorizations = payload.get("authorizations")
    if isinstance(authorizations, list) and authorizations:
        first = authorizations[0]
        if isinstance(first, dict) and isinstance(first.get("user_id"), str):
            return str(first["user_id"])
    return None


router = APIRouter()
for _part in (
    slack_trigger_routes("agents/{agent_id}", _AGENT),
    slack_trigger_routes("workforces/{workforce_id}", _WORKFORCE),
    events,
):
    router.include_router(_part)
