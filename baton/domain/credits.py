"""Plans and credits, as Relevance AI has them: two currencies per organisation, **actions**
(one per tool run, counted even when the tool fails; an agent's tool call is a tool run) and
**vendor credits** (what model calls cost). A plan gives a monthly allowance of each, which
resets when the calendar month (UTC) ends; grants (top-ups) come on top and roll over.

Amounts are kept in micro-units (integers), so vendor credits add up exactly on every
database; the API shows them as numbers."""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baton.errors import InvalidInput

logger = logging.getLogger("baton.credits")

MICROS = 1_000_000


# The failure type of a task's model call its organisation cannot pay for: the task pauses
# (`out-of-credits`) until a grant or a new period, instead of failing.
OUT_OF_CREDITS = "OutOfCredits"
# The signal that tells paused tasks credits arrived (a grant, a plan change), and how long
# a paused task waits before it checks again by itself (a new period's allowance tells none).
CREDITS_ARRIVED_SIGNAL = "credits_arrived"
CREDITS_RECHECK = timedelta(minutes=15)


class Currency(StrEnum):
    actions = "actions"
    vendor_credits = "vendor_credits"


class EntryKind(StrEnum):
    grant = "grant"
    debit = "debit"


MB = 1024 * 1024


class Plan(BaseModel):
    """A plan's monthly allowances and its limits; None is no limit. The size limits are
    capped by the installation's own (Settings.max_upload_bytes, max_rows_per_import)."""

    model_config = ConfigDict(extra="forbid")

    monthly_actions: int | None = Field(default=None, ge=0)
    monthly_vendor_credits: float | None = Field(default=None, ge=0)
    max_projects: int | None = Field(default=None, ge=0)
    max_members: int | None = Field(
        default=None, ge=0, description="People with a role in the organisation or its projects"
    )
    max_concurrent_tasks: int | None = Field(default=None, ge=1)
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="API requests per token and calendar minute"
    )
    max_upload_bytes: int | None = Field(default=None, ge=1)
    max_rows_per_import: int | None = Field(default=None, ge=1)
    agent_seconds_per_message: int | None = Field(default=900, ge=1)
    tool_run_seconds: int | None = Field(default=900, ge=1)
    history_retention_days: int | None = Field(default=None, ge=1)

    def included_micros(self, currency: Currency) -> int | None:
        included = (
            self.monthly_actions if currency is Currency.actions else self.monthly_vendor_credits
        )
        return None if included is None else round(included * MICROS)


BUILT_IN_PLANS: dict[str, Plan] = {
    "free": Plan(
        monthly_actions=200,
        monthly_vendor_credits=2,
        max_projects=1,
        max_members=3,
        max_concurrent_tasks=2,
        requests_per_minute=60,
        max_upload_bytes=10 * MB,
        max_rows_per_import=5_000,
        history_retention_days=30,
    ),
    "pro": Plan(
        monthly_actions=10_000,
        monthly_vendor_credits=20,
        max_projects=5,
        max_members=10,
        max_concurrent_tasks=10,
        requests_per_minute=300,
        max_upload_bytes=50 * MB,
        max_rows_per_import=50_000,
        history_retention_days=90,
    ),
    "team": Plan(
        monthly_actions=70_000,
        monthly_vendor_credits=50,
        max_projects=20,
        max_members=50,
        max_concurrent_tasks=25,
        requests_per_minute=1_000,
        max_upload_bytes=100 * MB,
        max_rows_per_import=50_000,
        history_retention_days=365,
    ),
    # No limit on anything; the time limits are what every plan has unless it says otherwise.
    "enterprise": Plan(),
}


def capped(limit: int | None, ceiling: int) -> int:
    """A plan's size limit under the installation's ceiling: the smaller of the two; a plan
    without a limit gets the ceiling."""
    return ceiling if limit is None else min(limit, ceiling)


def load_plans(plans_file: Path | None) -> dict[str, Plan]:
    """The built-in plans, with those of `plans_file` (a YAML mapping of plan name to its
    fields) replacing or adding to them."""
    plans = dict(BUILT_IN_PLANS)
    if plans_file is None:
        return plans
    try:
        document = yaml.safe_load(plans_file.read_text()) or {}
        if not isinstance(document, dict):
            raise InvalidInput(f"{plans_file.name}: a mapping of plan name to its allowances")
        plans.update({str(name): Plan.model_validate(fields) for name, fields in document.items()})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise InvalidInput(f"plans file {plans_file.name}: {exc}") from exc
    return plans


class ModelPrice(BaseModel):
    """What a model call costs in vendor credits, per 1,000 tokens. Input tokens the
    provider read from its cache cost `cached_input` instead of `input` (unset: `input`)."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)

    def cost_micros(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> int:
        """`cached_tokens` are part of `input_tokens` (as providers count them)."""
        cached_tokens = min(cached_tokens, input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        credits = (
            (input_tokens - cached_tokens) * self.input
            + cached_tokens * cached_rate
            + output_tokens * self.output
        ) / 1000
        return round(credits * MICROS)


# List prices in US dollars at the time of writing (a vendor credit is a dollar's worth); an
# operator sets their own with BATON_MODEL_PRICES_FILE. A model without a price costs nothing.
BUILT_IN_PRICES: dict[str, ModelPrice] = {
    "openai:gpt-4o-mini": ModelPrice(input=0.00015, cached_input=0.000075, output=0.0006),
    "openai:gpt-4o": ModelPrice(input=0.0025, cached_input=0.00125, output=0.01),
    "openai:gpt-4.1-mini": ModelPrice(input=0.0004, cached_input=0.0001, output=0.0016),
    "openai:gpt-4.1": ModelPrice(input=0.002, cached_input=0.0005, output=0.008),
    "anthropic:claude-3-5-haiku-latest": ModelPrice(
        input=0.0008, cached_input=0.00008, output=0.004
    ),
    "anthropic:claude-sonnet-4-0": ModelPrice(input=0.003, cached_input=0.0003, output=0.015),
}


def load_prices(prices_file: Path | None) -> dict[str, ModelPrice]:
    """The built-in prices, with those of `prices_file` (a YAML mapping of `provider:model`
    to `{input, cached_input, output}` per 1,000 tokens) replacing or adding to them."""
    prices = dict(BUILT_IN_PRICES)
    if prices_file is None:
        return prices
    try:
        document = yaml.safe_load(prices_file.read_text()) or {}
        if not isinstance(document, dict):
            raise InvalidInput(f"{prices_file.name}: a mapping of model to its prices")
        prices.update({str(model): ModelPrice.model_validate(p) for model, p in document.items()})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise InvalidInput(f"model prices file {prices_file.name}: {exc}") from exc
    return prices


class LlmCharge(BaseModel):
    """One model call on the installation's key, to be charged its vendor credits once per
    `key`. It crosses Temporal: a tool run's `llm` steps hand theirs to the run's last write,
    which charges them all at once."""

    key: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


def llm_call_key(task_id: str, seq: int) -> str:
    """The idempotency key of a model answer's vendor credits: message `seq` of the task."""
    return f"llm:{task_id}:{seq}"


# The installation's ceilings when its settings do not say (Settings.max_upload_bytes,
# Settings.max_rows_per_import): no plan goes past them.
UPLOAD_CEILING_BYTES = 100 * MB
ROWS_PER_IMPORT_CEILING = 50_000


class PlanLimits(BaseModel):
    """What an organisation's plan allows, as it applies: sizes already capped by the
    installation's ceilings. null: no limit."""

    max_projects: int | None
    max_members: int | None
    max_concurrent_tasks: int | None
    requests_per_minute: int | None
    max_upload_bytes: int
    max_rows_per_import: int
    agent_seconds_per_message: int | None
    tool_run_seconds: int | None
    history_retention_days: int | None


class PlanBook(BaseModel):
    """The plans an installation offers, the one an organisation without a plan of its own
    is on (Settings.default_plan, Settings.plans_file), and the installation's size ceilings."""

    plans: dict[str, Plan] = Field(default_factory=lambda: dict(BUILT_IN_PLANS))
    default_plan: str = "enterprise"
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(BUILT_IN_PRICES))
    upload_ceiling_bytes: int = UPLOAD_CEILING_BYTES
    rows_per_import_ceiling: int = ROWS_PER_IMPORT_CEILING
    metering: bool = True
    """Off (Settings.metering), credits are neither required nor debited."""

    def limits(self, chosen: str | None) -> PlanLimits:
        """The one place an upload's size and an import's rows are decided: the plan's
        limit, or the installation's ceiling where that is smaller."""
        plan = self.plan(chosen)
        return PlanLimits(
            max_projects=plan.max_projects,
            max_members=plan.max_members,
            max_concurrent_tasks=plan.max_concurrent_tasks,
            requests_per_minute=plan.requests_per_minute,
            max_upload_bytes=capped(plan.max_upload_bytes, self.upload_ceiling_bytes),
            max_rows_per_import=capped(plan.max_rows_per_import, self.rows_per_import_ceiling),
            agent_seconds_per_message=plan.agent_seconds_per_message,
            tool_run_seconds=plan.tool_run_seconds,
            history_retention_days=plan.history_retention_days,
        )

    def plan_name(self, chosen: str | None) -> str:
        """The plan that applies to an organisation whose stored plan is `chosen`: its own, or
        the default where it has none or the plans file no longer has it (see `plan`)."""
        name = chosen or self.default_plan
        return name if name in self.plans else self.default_plan

    def plan(self, chosen: str | None) -> Plan:
        """The plan that applies. A stored plan the plans file no longer has (an operator
        removed or renamed it) is logged and the default applies, so the organisation keeps
        working rather than every request of it failing; the stored name stays, and applies
        again once the file has it. Choosing a plan is checked strictly: `check`."""
        name = chosen or self.default_plan
        if name not in self.plans:
            _warn_unknown_plan(name, self.default_plan)
        return self.plans[self.plan_name(chosen)]

    def knows(self, chosen: str | None) -> bool:
        """Whether the plans file has the plan stored as `chosen` (None: the default)."""
        return (chosen or self.default_plan) in self.plans

    def check(self, name: str) -> Plan:
        """The plan named `name`, for an organisation moving to it (InvalidInput if none)."""
        if name not in self.plans:
            raise InvalidInput(f"unknown plan {name!r}; the plans are {', '.join(self.plans)}")
        return self.plans[name]


@functools.cache
def _warn_unknown_plan(name: str, default: str) -> None:
    """Once per process and name: an organisation's plan is not in the plans file."""
    logger.warning(
        "an organisation is on plan %r, which the plans file does not have: plan %r applies "
        "to it until the file has it again or the organisation is moved",
        name,
        default,
    )


def period_of(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) `now` falls in: its start, and its end (the next start)."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def as_amount(micros: int, currency: Currency) -> int | float:
    """Micro-units as the API shows them: actions whole, vendor credits as a number."""
    if currency is Currency.actions:
        return micros // MICROS
    return micros / MICROS


def tool_run_key(run_id: str) -> str:
    """The idempotency key of a tool run's action: one run, one debit, however often the
    write that records the run is retried."""
    return f"tool-run:{run_id}"


def tool_run_step_key(run_id: str, position: int, item: int) -> str:
    """The idempotency key of an `llm` step's vendor credits: the step at `position` of the
    run, for foreach `item` (-1 without foreach). It starts with the run's own key, so what a
    run spent is read by that prefix."""
    return f"{tool_run_key(run_id)}:step:{position}:{item}"


def enrichment_step_key(job_id: str, row_id: int, position: int, item: int) -> str:
    """The idempotency key of an enrichment's `llm` step's vendor credits: the step at
    `position` (foreach `item`) of the job's tool, for one row; a row redone after a crash
    is not charged again."""
    return f"enrichment:{job_id}:row:{row_id}:step:{position}:{item}"


class Allowance(BaseModel):
    """One currency of an organisation in the current period."""

    included: int | float | None = Field(description="The plan's monthly allowance; null: none")
    used: int | float = Field(description="Spent this period")
    granted: int | float = Field(description="Grants not yet spent (they roll over)")
    remaining: int | float | None = Field(
        description="What may still be spent: the allowance left plus the grants; null: no limit"
    )


class MonthlyLimits(BaseModel):
    """What an organisation or a project may spend a month, set by its admins below the plan;
    null: no limit of its own. Reaching one refuses like running out of credits."""

    model_config = ConfigDict(extra="forbid")

    actions: int | None = Field(default=None, ge=0, le=10**12)
    vendor_credits: float | None = Field(default=None, ge=0, le=10**9)

    @classmethod
    def from_micros(cls, actions: int | None, vendor_credits: int | None) -> MonthlyLimits:
        return cls(
            actions=None if actions is None else int(as_amount(actions, Currency.actions)),
            vendor_credits=(
                None
                if vendor_credits is None
                else float(as_amount(vendor_credits, Currency.vendor_credits))
            ),
        )

    def micros(self, currency: Currency) -> int | None:
        amount = self.actions if currency is Currency.actions else self.vendor_credits
        return None if amount is None else round(amount * MICROS)


MAX_THRESHOLDS = 10


class AlertsIn(BaseModel):
    """Usage alerts: percentages of the allowance or limit in force (the smaller), per
    currency; a webhook to POST each to, or null for the audit log alone."""

    model_config = ConfigDict(extra="forbid")

    thresholds: list[int] = Field(max_length=MAX_THRESHOLDS)
    webhook_url: str | None = Field(default=None, max_length=2000)

    @field_validator("thresholds")
    @classmethod
    def _percentages(cls, thresholds: list[int]) -> list[int]:
        for threshold in thresholds:
            if not 1 <= threshold <= 100:
                raise ValueError(f"a threshold is a percentage from 1 to 100, not {threshold}")
        return sorted(set(thresholds))


class AlertsOut(BaseModel):
    thresholds: list[int]
    webhook_host: str | None = Field(
        description="Where alerts are POSTed; the URL itself is not shown (it may hold a token)"
    )


class ProjectUse(BaseModel):
    project_id: str
    name: str
    limits: MonthlyLimits
    actions_used: int | float
    vendor_credits_used: int | float


def alert_cap(included: int | None, limit: int | None) -> int | None:
    """What alert thresholds are percentages of: the plan's allowance or the organisation's
    limit, the smaller where both are set; None where neither is."""
    caps = [cap for cap in (included, limit) if cap is not None]
    return min(caps) if caps else None


def reached_thresholds(thresholds: list[int], cap: int, used: int) -> list[int]:
    """The thresholds `used` is at or past."""
    return [t for t in thresholds if used * 100 >= t * cap]


class CreditsOut(BaseModel):
    plan: str
    period_start: datetime
    period_end: datetime
    actions: Allowance
    vendor_credits: Allowance
    limits: PlanLimits
    monthly_limits: MonthlyLimits = Field(
        default_factory=MonthlyLimits, description="The organisation's own monthly limits"
    )
    projects: list[ProjectUse] = Field(
        default_factory=list, description="Each project's limits and use this period"
    )
    alerts: AlertsOut = Field(default_factory=lambda: AlertsOut(thresholds=[], webhook_host=None))
