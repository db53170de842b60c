"""Webhooks, email inboxes and schedules of an agent or a workforce (`agent_id` or
`workforce_id`)."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any, Literal

from jinja2 import meta
from pydantic import BaseModel, ConfigDict, Field, field_validator

from baton import templating
from baton.db.tables import AgentWebhook, EmailInbox, SlackTrigger
from baton.domain.tasks import TaskStatus

# The one name a webhook template reads: the request's JSON body.
PAYLOAD = "payload"
MAX_MESSAGE_LENGTH = 100_000


def check_payload_template(template: str) -> str:
    """A template that parses and reads nothing but `payload`."""
    try:
        names = meta.find_undeclared_variables(templating.parse(template))
    except templating.TemplateError as exc:
        raise ValueError(f"template does not parse: {exc}") from exc
    unknown = sorted(names - {PAYLOAD})
    if unknown:
        raise ValueError(f"unknown name {unknown[0]!r}; a webhook template reads only payload")
    return template


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_template: str = Field(min_length=1, max_length=20_000)
    dedupe_key_template: str | None = Field(default=None, max_length=2_000)
    params_template: dict[str, str] = Field(
        default_factory=dict,
        description="The task params (an agent's, or a workforce's agent nodes'): each a "
        "template over the payload; a lone "
        "{{ payload.x }} keeps the value's JSON type",
    )

    @field_validator("params_template")
    @classmethod
    def _params_template(cls, templates: dict[str, str]) -> dict[str, str]:
        return {name: check_payload_template(t) for name, t in templates.items()}

    @field_validator("message_template")
    @classmethod
    def _message_template(cls, template: str) -> str:
        return check_payload_template(template)

    @field_validator("dedupe_key_template")
    @classmethod
    def _dedupe_key_template(cls, template: str | None) -> str | None:
        if template is None or not template.strip():
            return None
        return check_payload_template(template)


class WebhookPublic(BaseModel):
    id: str
    agent_id: str | None
    workforce_id: str | None = None
    message_template: str
    dedupe_key_template: str | None
    params_template: dict[str, str]
    created_at: datetime

    @classmethod
    def of(cls, webhook: AgentWebhook) -> WebhookPublic:
        return cls(
            id=webhook.id,
            agent_id=webhook.agent_id,
            workforce_id=webhook.workforce_id,
            message_template=webhook.message_template,
            dedupe_key_template=webhook.dedupe_key_template,
            params_template=webhook.params_template or {},
            created_at=webhook.created_at,
        )


class WebhookCreated(WebhookPublic):
    """The only answer that carries the secret: it is stored as a hash and never shown again."""

    url: str
    token: str


class HookAccepted(BaseModel):
    task_id: str
    workflow_id: str
    status: TaskStatus
    # True when the dedupe key had already started this task, so nothing new started.
    deduplicated: bool


class EmailInboxPublic(BaseModel):
    id: str
    agent_id: str | None
    workforce_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, inbox: EmailInbox) -> EmailInboxPublic:
        return cls(
            id=inbox.id,
            agent_id=inbox.agent_id,
            workforce_id=inbox.workforce_id,
            created_at=inbox.created_at,
        )


class EmailInboxCreated(EmailInboxPublic):
    """The only answer that carries the URL: its token is stored as a hash."""

    url: str = Field(description="Where a mail relay posts each message (message/rfc822)")


class EmailAccepted(BaseModel):
    task_id: str
    workflow_id: str
    status: TaskStatus
    # started: a new task; threaded: a reply, posted to the task of the message it answers;
    # duplicate: this Message-ID was taken before, nothing new happened.
    outcome: Literal["started", "threaded", "duplicate"]


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        min_length=1,
        max_length=200,
        description="Five fields (minute hour day-of-month month day-of-week) or a shorthand "
        "such as `@daily` or `@every 30m`; Temporal checks it.",
        examples=["0 9 * * 1-5"],
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, examples=["Europe/Paris"])
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The task params every run starts with (an agent's, or a workforce's "
        "agent nodes')",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        cron = cron.strip()
        if "TZ=" in cron:
            raise ValueError("give the time zone in the timezone field, not in the cron string")
        return cron

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {name!r}; use an IANA name such as Europe/Paris"
            ) from exc
        return name


class SchedulePublic(BaseModel):
    id: str
    agent_id: str | None
    workforce_id: str | None = None
    cron: str
    timezone: str
    message: str
    params: dict[str, Any]
    paused: bool
    # None while paused, or when Temporal cannot be asked right now.
    next_run_at: datetime | None
    temporal_schedule_id: str
    temporal_ui_url: str
    created_at: datetime


class SlackTriggerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integration: str = Field(
        min_length=1, max_length=64, description="The project's Slack integration, by name or id"
    )


class SlackTriggerPublic(BaseModel):
    id: str
    agent_id: str | None
    workforce_id: str | None
    integration_id: str
    created_at: datetime

    @classmethod
    def of(cls, trigger: SlackTrigger) -> SlackTriggerPublic:
        return cls(
            id=trigger.id,
            agent_id=trigger.agent_id,
            workforce_id=trigger.workforce_id,
            integration_id=trigger.integration_id,
            created_at=trigger.created_at,
        )


class SlackTriggerCreated(SlackTriggerPublic):
    """The only answer that carries the URL's secret token: give the URL to Slack (Event
    Subscriptions' Request URL); it is stored as a hash and never shown again."""

    url: str
