"""The tables. Migrations under `migrations/` create exactly these; a test compares them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite stores no zone and hands back naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Organization(Base):
    """An organisation, the seed's "team": its integer id is the `team_id` of `POST /api/user`."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    # Its plan (baton/domain/credits.py); None: the installation's default plan.
    plan: Mapped[str | None] = mapped_column(String(64), default=None)
    # Monthly limits its admins set below the plan, in micro-units; None: only the plan's.
    limit_actions: Mapped[int | None] = mapped_column(BigInteger, default=None)
    limit_vendor_credits: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Usage alerts: percentages of what is in force, and the webhook told (encrypted, since
    # a webhook URL often carries its own token).
    alert_thresholds: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    alert_webhook_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditEntry(Base):
    """The credits ledger, append-only: grants and debits of an organisation's actions and
    vendor credits, in micro-units. A debit's `idempotency_key` names what it pays for (a tool
    run), so a retried or replayed write never charges twice. `from_grant` is the part of a
    debit that the period's allowance could not pay and grants paid. No foreign key to the
    project: the ledger outlives what it paid for."""

    __tablename__ = "credit_entries"
    __table_args__ = (Index("ix_credit_entries_org_created", "org_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(String(36), default=None)
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    from_grant: Mapped[int] = mapped_column(BigInteger, default=0)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditTotal(Base):
    """Running totals of the credits ledger, kept in the transaction of each entry so that
    what an organisation has left is read from a row, not summed over its ledger. One row per
    organisation, currency, scope and period: `period_start` is a calendar month, or
    `ALL_TIME` (the sentinel of the whole ledger); `project_id` is one project's debits, or
    `ORG_WIDE` (every entry of the organisation). Each holds the sums of its entries: `used`
    (debits), `paid_by_grants` (the debits' `from_grant`), `granted` (grants). The ledger stays
    the record: these equal its sums, and migration 0024 built them from it."""

    __tablename__ = "credit_totals"

    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(32), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_by_grants: Mapped[int] = mapped_column(BigInteger, default=0)
    granted: Mapped[int] = mapped_column(BigInteger, default=0)


class CreditAlert(Base):
    """A usage threshold an organisation's use reached: one row per threshold, currency and
    period (the unique key), so concurrent or retried debits alert once. Written in the
    debit's transaction; `delivery` is then `pending` until the webhook is sent (`sent`,
    `failed` after its last attempt), or `none` when no webhook was set. `due_at`: when a
    pending alert may be tried again, or when a `sending` one's claim lapses."""

    __tablename__ = "credit_alerts"
    __table_args__ = (
        UniqueConstraint("org_id", "currency", "threshold", "period_start", name="uq_credit_alert"),
        Index("ix_credit_alerts_delivery", "delivery"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column()
    used: Mapped[int] = mapped_column(BigInteger)
    cap: Mapped[int] = mapped_column(BigInteger)
    delivery: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateWindow(Base):
    """The requests one token made in one calendar minute (`minute`: minutes since the epoch,
    UTC). Counted here, not in memory, so every API replica shares the count; a window is
    deleted once a later one begins."""

    __tablename__ = "rate_windows"

    token_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, index=True
    )
    requests: Mapped[int] = mapped_column(Integer)


class AuditEntry(Base):
    """The audit log, append-only: one row per administrative act, written in the act's own
    transaction (baton/db/repositories/audit.py), never updated or deleted by Baton. No
    foreign key to the project or the actor: the log outlives what it names."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_org_created", "org_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(String(36), default=None)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(36), default=None)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(200))
    # The client's address as the API saw it (IPv6 text is at most 45 characters).
    client: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # Monthly limits the project's admins set, in micro-units; None: the organisation's.
    limit_actions: Mapped[int | None] = mapped_column(BigInteger, default=None)
    limit_vendor_credits: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A user's role in an organisation (project_id empty) or in one of its projects."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "project_id", "user_id", name="uq_membership"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """Only the SHA-256 of a token is stored; `prefix` is its first characters, for display."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class UserGroup(Base):
    """An end customer of a product that embeds Baton (`POST /api/user`)."""

    __tablename__ = "user_groups"
    __table_args__ = (
        UniqueConstraint("org_id", "environment", "provided_id", name="uq_user_group_provided_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    provided_id: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentVersion(Base):
    """Every saved definition of an agent; a task records the version it started with."""

    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "version", name="uq_agent_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Workforce(Base):
    __tablename__ = "workforces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkforceVersion(Base):
    """Every saved definition of a workforce; a task runs the version it started with."""

    __tablename__ = "workforce_versions"
    __table_args__ = (UniqueConstraint("workforce_id", "version", name="uq_workforce_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workforce_id: Mapped[str] = mapped_column(ForeignKey("workforces.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Task(Base):
    """The API's projection of an `AgentTaskWorkflow`, written by its activities."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # An agent task's agent, and a workforce node's; none for a workforce task itself.
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), default=None, index=True
    )
    user_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("user_groups.id", ondelete="SET NULL"), default=None, index=True
    )
    # `agent-task` or `workforce-task`.
    kind: Mapped[str] = mapped_column(String(32), default="agent-task", server_default="agent-task")
    workforce_id: Mapped[str | None] = mapped_column(
        ForeignKey("workforces.id", ondelete="CASCADE"), default=None, index=True
    )
    workforce_version: Mapped[int | None] = mapped_column(Integer, default=None)
    # A task a workforce started for one of its nodes: the task it works for, and the node.
    parent_task_id: Mapped[str | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), default=None, index=True
    )
    node: Mapped[str | None] = mapped_column(String(64), default=None)
    workflow_id: Mapped[str] = mapped_column(String(100), unique=True)
    agent_version: Mapped[int | None] = mapped_column(Integer, default=None)
    # The agent's typed params as the task started with them (defaults applied).
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Its place in the organisation's concurrency quota (baton/domain/capacity.py); NULL:
    # no quota applied.
    capacity: Mapped[str | None] = mapped_column(String(16), default=None, index=True)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Of input_tokens, those read from the provider's prompt cache.
    cached_input_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Where it was started from when not through the API: `share:<id>` for a share link.
    source: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskMessage(Base):
    __tablename__ = "task_messages"
    __table_args__ = (UniqueConstraint("task_id", "seq", name="uq_task_message_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[Any] = mapped_column(JSON, nullable=True, default=None)
    # A tool message: the call it answers; a workforce task's delegation: the task it ran in.
    tool_call_id: Mapped[str | None] = mapped_column(String(200), default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    # In a workforce task: the node whose agent wrote it.
    author: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskEvent(Base):
    """What happened in a task, in order: `seq` counts per task from 1 and is the SSE id.
    `key` makes an append idempotent under activity retries."""

    __tablename__ = "task_events"
    __table_args__ = (
        UniqueConstraint("task_id", "seq", name="uq_task_event_seq"),
        UniqueConstraint("task_id", "key", name="uq_task_event_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    key: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _one_target(table: str) -> CheckConstraint:
    """A trigger starts tasks of one agent or of one workforce, never both or neither."""
    return CheckConstraint(
        "(agent_id IS NULL) <> (workforce_id IS NULL)", name=f"ck_{table}_one_target"
    )


class AgentWebhook(Base):
    """A secret URL that starts a task of an agent, or of a workforce (exactly one of the
    two is set), from any JSON payload."""

    __tablename__ = "agent_webhooks"
    __table_args__ = (_one_target("agent_webhooks"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True, default=None
    )
    workforce_id: Mapped[str | None] = mapped_column(
        ForeignKey("workforces.id", ondelete="CASCADE"), index=True, default=None
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    message_template: Mapped[str] = mapped_column(Text)
    dedupe_key_template: Mapped[str | None] = mapped_column(Text, default=None)
    # Param name -> a template over the payload.
    params_template: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SlackTrigger(Base):
    """A Slack app's events URL (`/api/hooks/slack/<token>`) for an agent or a workforce
    (exactly one of the two): mentions of its bot and direct messages start tasks, one per
    Slack thread, answered in the thread. The token is stored as a hash."""

    __tablename__ = "slack_triggers"
    __table_args__ = (_one_target("slack_triggers"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True, default=None
    )
    workforce_id: Mapped[str | None] = mapped_column(
        ForeignKey("workforces.id", ondelete="CASCADE"), index=True, default=None
    )
    integration_id: Mapped[str] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SlackEvent(Base):
    """An event a Slack trigger acted on, by Slack's `event_id`: Slack sends an event again
    when it got no answer in time, and the same event must not start a second task."""

    __tablename__ = "slack_events"

    trigger_id: Mapped[str] = mapped_column(
        ForeignKey("slack_triggers.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailInbox(Base):
    """An email address of an agent, or of a workforce (exactly one of the two is set): the
    secret URL a mail relay posts each message to. A message starts a task, a reply joins
    the task of the message it answers."""

    __tablename__ = "email_inboxes"
    __table_args__ = (_one_target("email_inboxes"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True, default=None
    )
    workforce_id: Mapped[str | None] = mapped_column(
        ForeignKey("workforces.id", ondelete="CASCADE"), index=True, default=None
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class InboundEmail(Base):
    """A message an inbox took, by its Message-ID, and the task it started or joined. The
    unique key is what makes a delivery repeated (by a relay's retry, to another API
    replica) start or join nothing twice; `message_key` is the id's SHA-256, since an id may
    be longer than an index takes."""

    __tablename__ = "inbound_emails"
    __table_args__ = (UniqueConstraint("inbox_id", "message_key", name="uq_inbound_email_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("email_inboxes.id", ondelete="CASCADE"))
    message_key: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(Text)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentSchedule(Base):
    """A Temporal Schedule (`baton-schedule-<id>`) that starts a task of an agent, or of a
    workforce (exactly one of the two is set), with a fixed message."""

    __tablename__ = "agent_schedules"
    __table_args__ = (_one_target("agent_schedules"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True, default=None
    )
    workforce_id: Mapped[str | None] = mapped_column(
        ForeignKey("workforces.id", ondelete="CASCADE"), index=True, default=None
    )
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    message: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    paused: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectSecret(Base):
    """A named secret of a project, encrypted with the settings' secret key. Steps read it as
    `{{ secrets.<name> }}` inside activities; it is never returned by the API."""

    __tablename__ = "project_secrets"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_project_secret_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tool(Base):
    __tablename__ = "tools"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ToolVersion(Base):
    """Every saved definition of a tool; a run pins the version it started with."""

    __tablename__ = "tool_versions"
    __table_args__ = (UniqueConstraint("tool_id", "version", name="uq_tool_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ToolRun(Base):
    __tablename__ = "tool_runs"
    __table_args__ = (Index("ix_tool_runs_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), index=True)
    tool_version: Mapped[int] = mapped_column(Integer)
    workflow_id: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[Any] = mapped_column(JSON, nullable=True, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Where it was started from when not through the API: `share:<id>` for a share link.
    source: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ToolRunStep(Base):
    """One step's result (one row per foreach item), written once per (run, step, item)."""

    __tablename__ = "tool_run_steps"
    __table_args__ = (UniqueConstraint("run_id", "position", "item", name="uq_tool_run_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("tool_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    item: Mapped[int] = mapped_column(Integer, default=-1)
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    output: Mapped[Any] = mapped_column(JSON, nullable=True, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayloadBlob(Base):
    """A Temporal payload too large for history (a claim check): keyed by the SHA-256 of its
    workflow's id and its bytes, so storing the same payload twice, as a retry does, writes
    one row. `closed_at` is when that workflow closed; the blob goes once Temporal's history
    retention has passed since. Blobs stored before 0008 have no workflow and stay."""

    __tablename__ = "payload_blobs"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    workflow_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Snippet(Base):
    """A project's named text, `{{ snippets.<name> }}` in prompts and step templates."""

    __tablename__ = "snippets"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_snippet_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Integration(Base):
    """A project's connection to an outside service (an LLM provider first). Its key is
    encrypted with the settings' secret key and leaves the database only inside activities."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_integration_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    key_ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeSet(Base):
    """A table of a project's data: typed columns, JSON rows, lexical and vector search.
    `embedding` names the provider that turns a row's text into a vector ({} for none)."""

    __tablename__ = "knowledge_sets"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_knowledge_set_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    embedding: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeRow(Base):
    """One row. `content` is the text search sees (the set's text columns joined); the lexical
    index follows it (FTS5 on SQLite, a GIN index on PostgreSQL, both made by migrations).
    `embedding` is float32 bytes of `content`'s vector, NULL until computed or after a change."""

    __tablename__ = "knowledge_rows"
    __table_args__ = (
        Index("ix_knowledge_rows_set_id", "set_id", "id"),
        Index("ix_knowledge_rows_source", "source_id", "source_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_id: Mapped[str] = mapped_column(ForeignKey("knowledge_sets.id", ondelete="CASCADE"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    content: Mapped[str] = mapped_column(Text, default="")
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A row a synced source wrote: the source, the key it came under (a page's URL, a feed
    # item's id) and the hash of what that key gave (baton/knowledge/sources.py).
    source_id: Mapped[str | None] = mapped_column(String(36), default=None)
    source_key: Mapped[str | None] = mapped_column(Text, default=None)
    source_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class KnowledgeSource(Base):
    """A URL a set stays in sync with (baton/domain/knowledge_sources.py), and how its last
    sync went. Its Temporal Schedule is `knowledge-source-<id>`."""

    __tablename__ = "knowledge_sources"
    __table_args__ = (Index("ix_knowledge_sources_set_created", "set_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    set_id: Mapped[str] = mapped_column(ForeignKey("knowledge_sets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    interval_minutes: Mapped[int] = mapped_column(Integer)
    last_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    last_outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    last_workflow_id: Mapped[str | None] = mapped_column(String(200), default=None)
    rows_added: Mapped[int] = mapped_column(Integer, default=0)
    rows_changed: Mapped[int] = mapped_column(Integer, default=0)
    rows_removed: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeSourceDocument(Base):
    """A document a source fetched (the page, the feed, the file, each page of a sitemap)
    with the validators it answered with, for the next fetch to be conditional."""

    __tablename__ = "knowledge_source_documents"

    source_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_sources.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(String(2000), primary_key=True)
    etag: Mapped[str | None] = mapped_column(Text, default=None)
    last_modified: Mapped[str | None] = mapped_column(Text, default=None)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeJob(Base):
    """Long work on a set (an import, embedding, an enrichment) and its progress."""

    __tablename__ = "knowledge_jobs"
    __table_args__ = (Index("ix_knowledge_jobs_set_created", "set_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    set_id: Mapped[str] = mapped_column(ForeignKey("knowledge_sets.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    workflow_id: Mapped[str | None] = mapped_column(String(100), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShareLink(Base):
    """A link that lets anyone holding it chat with an agent or run a tool, without a token:
    only the hash of its random token is kept. One shared with a user group has no public
    page: it lists the agent on that group's dashboard."""

    __tablename__ = "share_links"
    __table_args__ = (
        CheckConstraint(
            "(agent_id IS NULL) <> (tool_id IS NULL)", name="ck_share_links_one_target"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), default=None, index=True
    )
    tool_id: Mapped[str | None] = mapped_column(
        ForeignKey("tools.id", ondelete="CASCADE"), default=None, index=True
    )
    user_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("user_groups.id", ondelete="CASCADE"), default=None, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class ShareRun(Base):
    """A task or tool run started from a share link, and the visitor (the hash of the id in
    their cookie) who started it: a visitor sees only their own."""

    __tablename__ = "share_runs"
    __table_args__ = (Index("ix_share_runs_share_visitor", "share_id", "visitor_hash"),)

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    share_id: Mapped[str] = mapped_column(ForeignKey("share_links.id", ondelete="CASCADE"))
    visitor_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DashboardCode(Base):
    """A one-time code that opens a user group's dashboard (the URL carries the code, never
    the group's token); only its hash is kept."""

    __tablename__ = "dashboard_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_group_id: Mapped[str] = mapped_column(ForeignKey("user_groups.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class BulkTaskRun(Base):
    """A run of one agent task per row of a knowledge set (`BulkTaskWorkflow`)."""

    __tablename__ = "bulk_task_runs"
    __table_args__ = (Index("ix_bulk_task_runs_agent_created", "agent_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    set_id: Mapped[str] = mapped_column(ForeignKey("knowledge_sets.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(String(100), unique=True)
    # The request as given: template, filters, pace, working hours.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32))
    # While outside its working hours: when the next window opens.
    waiting_until: Mapped[datetime | None] = mapped_column(default=None)
    total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BulkTaskRow(Base):
    """A row of a bulk run: what the run did with it, and the task it started for it."""

    __tablename__ = "bulk_task_rows"
    __table_args__ = (Index("ix_bulk_task_rows_state", "bulk_id", "state", "row_id"),)

    bulk_id: Mapped[str] = mapped_column(
        ForeignKey("bulk_task_runs.id", ondelete="CASCADE"), primary_key=True
    )
    # No foreign key: a row deleted from the set after the run began fails its start.
    row_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    task_id: Mapped[str | None] = mapped_column(String(36), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
