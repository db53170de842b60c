"""The credits ledger: grants, debits, and what an organisation has left this period."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx
from sqlalchemy import Insert, and_, bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.idempotent import insert_new, insert_once
from baton.db.repositories import audit
from baton.db.tables import CreditAlert, CreditEntry, CreditTotal, Organization, Project, utcnow
from baton.domain.audit import SYSTEM, AuditAction, Target
from baton.domain.credits import (
    MICROS,
    AlertsIn,
    AlertsOut,
    Allowance,
    CreditsOut,
    Currency,
    EntryKind,
    LlmCharge,
    MonthlyLimits,
    PlanBook,
    PlanLimits,
    ProjectUse,
    alert_cap,
    as_amount,
    period_of,
    reached_thresholds,
    tool_run_key,
)
from baton.errors import NotFound, OutOfCredits
from baton.security import SecretBox

# The scopes of credit_totals besides a month and a project: the whole ledger, the whole
# organisation.
ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
ORG_WIDE = ""


async def get_org(*, session: AsyncSession, org_id: int) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} not found")
    return org


async def set_plan(*, session: AsyncSession, plans: PlanBook, org_id: int, plan: str) -> None:
    """Moves the organisation to `plan` (InvalidInput for a plan the book does not have)."""
    plans.check(plan)
    org = await get_org(session=session, org_id=org_id)
    org.plan = plan
    await session.flush()


async def plan_limits(*, session: AsyncSession, plans: PlanBook, project_id: str) -> PlanLimits:
    """The limits of the plan the project's organisation is on."""
    _, org = await _project_and_org(session, project_id)
    return plans.limits(org.plan)


async def grant(
    *,
    session: AsyncSession,
    org_id: int,
    currency: Currency,
    amount: float,
    key: str,
    note: str | None = None,
) -> bool:
    """Adds `amount` to the organisation's grants (they roll over); once per `key`."""
    await get_org(session=session, org_id=org_id)
    return await _insert(
        session,
        org_id=org_id,
        project_id=None,
        kind=EntryKind.grant,
        currency=currency,
        micros=round(amount * MICROS),
        from_grant=0,
        key=key,
        note=note,
        now=utcnow(),
    )


async def debit(
    *,
    session: AsyncSession,
    plans: PlanBook,
    org_id: int,
    project_id: str | None,
    currency: Currency,
    micros: int,
    key: str,
    now: datetime | None = None,
) -> bool:
    """Charges `micros` once per `key` (True when this call charged): the period's allowance
    pays first, grants the rest. A debit is never refused here: what started is paid for
    (a balance below zero is what the next start is refused for). The entry is dated `now`
    (the period it counts in). A debit that takes the organisation's use to an alert
    threshold records the alert with it. Without metering (Settings.metering) nothing is
    charged."""
    if not plans.metering:
        return False
    org = await get_org(session=session, org_id=org_id)
    return await _debit(session, plans, org, project_id, currency, micros, key, now or utcnow())


async def _debit(
    session: AsyncSession,
    plans: PlanBook,
    org: Organization,
    project_id: str | None,
    currency: Currency,
    micros: int,
    key: str,
    now: datetime,
) -> bool:
    charged = await _debit_each(session, plans, org, project_id, currency, [(key, micros)], now)
    return charged == 1


async def _debit_each(
    session: AsyncSession,
    plans: PlanBook,
    org: Organization,
    project_id: str | None,
    currency: Currency,
    debits: list[tuple[str, int]],
    now: datetime,
    *,
    period: tuple[int, int] | None = None,
) -> int:
    """Charges each (key, micros) of `debits` once per key, in order, and returns how many
    this call charged: the period's allowance pays first, grants the rest. The period's
    totals (`period`: its debits and the part grants paid, when the caller has just read
    them) are read once and written once, with what the new entries add."""
    included = plans.plan(org.plan).included_micros(currency)
    cap = alert_cap(included, _limit_of(org, currency)) if org.alert_thresholds else None
    used = paid_by_grants = 0
    if period is not None:
        used, paid_by_grants = period
    elif included is not None or cap is not None:
        standing = await _standing(session, org.id, currency, now)
        used, paid_by_grants = standing.used, standing.paid_by_grants
    entries = _debit_entries(
        org.id, project_id, currency, debits, included, used, paid_by_grants, now
    )
    # One statement for them all. An entry charged before (a retry) is not inserted again.
    new = await insert_new(session, CreditEntry, entries, key="idempotency_key")
    fresh = [entry for entry in entries if entry["idempotency_key"] in new]
    if len(fresh) < len(entries) and included is not None:
        # Some were charged before (a retry): only the new ones take their share of the
        # allowance, in order.
        redone = _debit_entries(
            org.id,
            project_id,
            currency,
            [(entry["idempotency_key"], entry["amount"]) for entry in fresh],
            included,
            used,
            paid_by_grants,
            now,
        )
        for entry in redone:
            await session.execute(
                update(CreditEntry)
                .where(CreditEntry.idempotency_key == entry["idempotency_key"])
                .values(from_grant=entry["from_grant"])
            )
        fresh = redone
    charged = len(fresh)
    added = sum(entry["amount"] for entry in fresh)
    added_from_grants = sum(entry["from_grant"] for entry in fresh)
    used += added
    if charged:
        await _add_to_totals(
            session,
            org_id=org.id,
            project_id=project_id,
            currency=currency,
            period_start=period_of(now)[0],
            used=added,
            paid_by_grants=added_from_grants,
            granted=0,
        )
    if charged and cap is not None:
        await _record_alerts(session, org, currency, cap=cap, used=used, now=now)
    return charged


def _debit_entries(
    org_id: int,
    project_id: str | None,
    currency: Currency,
    debits: list[tuple[str, int]],
    included: int | None,
    used: int,
    paid_by_grants: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ledger rows of `debits`, in order, each paid by what is left of the period's
    allowance (`included`, of which `used - paid_by_grants` is spent) before grants."""
    entries = []
    for key, micros in debits:
        from_grant = 0
        if included is not None:
            allowance_left = max(0, included - (used - paid_by_grants))
            from_grant = micros - min(micros, allowance_left)
        used, paid_by_grants = used + micros, paid_by_grants + from_grant
        entries.append(
            {
                "org_id": org_id,
                "project_id": project_id,
                "kind": EntryKind.debit.value,
                "currency": currency.value,
                "amount": micros,
                "from_grant": from_grant,
                "idempotency_key": key,
                "note": None,
                "created_at": now,
            }
        )
    return entries


async def charged(*, session: AsyncSession, key: str) -> int:
    """What the debit of `key` charged, in micro-units (0: none was made)."""
    amount = await session.scalar(
        select(CreditEntry.amount).where(
            CreditEntry.idempotency_key == key, CreditEntry.kind == EntryKind.debit.value
        )
    )
    return int(amount or 0)


async def charge_tool_run(
    *,
    session: AsyncSession,
    plans: PlanBook,
    project_id: str,
    run_id: str,
    require: bool = False,
) -> PlanLimits:
    """The action a tool run costs, once per run (counted whether the tool succeeds or not),
    and the limits of the plan it runs under. `require`: only if the organisation can pay
    it, else OutOfCredits (402) and nothing charged; the check and the debit read the
    organisation's totals once."""
    project, org = await _project_and_org(session, project_id)
    if plans.metering:
        standing = None
        if require:
            standing = await _require(session, plans, project, org, Currency.actions, MICROS)
        period = None if standing is None else (standing.used, standing.paid_by_grants)
        debits = [(tool_run_key(run_id), MICROS)]
        now = utcnow()
        await _debit_each(
            session, plans, org, project_id, Currency.actions, debits, now, period=period
        )
    return plans.limits(org.plan)


async def charge_llm_call(
    *,
    session: AsyncSession,
    plans: PlanBook,
    project_id: str,
    key: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
) -> bool:
    """The vendor credits of one model call on the installation's key, once per `key`:
    `cached_input_tokens` (part of `input_tokens`) at the model's cached input price. A
    model without a price (and every call on a project's own key, which the caller does not
    charge) costs nothing."""
    call = LlmCharge(
        key=key,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
    )
    return (
        await charge_llm_calls(session=session, plans=plans, project_id=project_id, calls=[call])
        == 1
    )


async def organization_of(*, session: AsyncSession, project_id: str) -> Organization:
    """The organisation that pays for the project's runs."""
    return (await _project_and_org(session, project_id))[1]


async def charge_llm_calls(
    *,
    session: AsyncSession,
    plans: PlanBook,
    project_id: str,
    calls: list[LlmCharge],
    org: Organization | None = None,
) -> int:
    """`charge_llm_call` for each of `calls`, in one read of the organisation (unless given:
    `organization_of`) and its totals; returns how many this call charged."""
    debits = []
    for call in calls:
        price = plans.prices.get(call.model)
        if price is None:
            continue
        micros = price.cost_micros(call.input_tokens, call.output_tokens, call.cached_input_tokens)
        if micros:
            debits.append((call.key, micros))
    if not debits or not plans.metering:
        return 0
    if org is None:
        org = await organization_of(session=session, project_id=project_id)
    currency = Currency.vendor_credits
    return await _debit_each(session, plans, org, project_id, currency, debits, utcnow())


async def require(
    *,
    session: AsyncSession,
    plans: PlanBook,
    project_id: str,
    currency: Currency,
    micros: int = 1,
) -> None:
    """Raises OutOfCredits unless the project's organisation has at least `micros` of
    `currency` left (its allowance this period, then its grants) and neither the
    organisation's monthly limit nor the project's is reached. Without any limit this reads
    the project and the organisation only; without metering, nothing."""
    if not plans.metering:
        return
    project, org = await _project_and_org(session, project_id)
    await _require(session, plans, project, org, currency, micros)


async def _require(
    session: AsyncSession,
    plans: PlanBook,
    project: Project,
    org: Organization,
    currency: Currency,
    micros: int,
) -> _Standing | None:
    """What `require` checks, and the totals it read (None: no limit, nothing read)."""
    included = plans.plan(org.plan).included_micros(currency)
    org_limit, project_limit = _limit_of(org, currency), _limit_of(project, currency)
    if included is None and org_limit is None and project_limit is None:
        return None
    now = utcnow()
    standing = await _standing(session, org.id, currency, now, project.id)
    if included is not None:
        left = max(0, included - (standing.used - standing.paid_by_grants)) + standing.granted
        if left < micros:
            await _raise_out_of_credits(session, plans, org, included, currency, now)
    if org_limit is not None and org_limit - standing.used < micros:
        _raise_limit_reached("organisation", org_limit, standing.used, currency, now)
    if project_limit is not None and project_limit - standing.project_used < micros:
        _raise_limit_reached("project", project_limit, standing.project_used, currency, now)
    return standing


async def _raise_out_of_credits(
    session: AsyncSession,
    plans: PlanBook,
    org: Organization,
    included: int,
    currency: Currency,
    now: datetime,
) -> NoReturn:
    allowance = await _allowance(session, org.id, included, now, currency)
    _, renews = period_of(now)
    name = plans.plan_name(org.plan)
    raise OutOfCredits(
        f"the organisation has no {_named(currency)} left this period (plan {name}: "
        f"{allowance.included} a month, {allowance.used} used, {allowance.granted} granted); "
        f"it renews at {renews.isoformat()}, or an operator can grant more",
        details={"plan": name, "period_end": renews.isoformat(), "currency": currency.value},
    )


def _raise_limit_reached(
    whose: str, limit: int, used: int, currency: Currency, now: datetime
) -> NoReturn:
    """Reaching a monthly limit refuses like running out, naming the limit: its admins can
    raise it, or wait for the next period."""
    _, renews = period_of(now)
    raise OutOfCredits(
        f"the {whose}'s monthly limit of {as_amount(limit, currency)} {_named(currency)} is "
        f"reached ({as_amount(used, currency)} used this period); it renews at "
        f"{renews.isoformat()}, or the {whose}'s admins can raise the limit",
        details={
            "limit": whose,
            "limit_amount": as_amount(limit, currency),
            "period_end": renews.isoformat(),
            "currency": currency.value,
        },
    )


def _named(currency: Currency) -> str:
    return "actions" if currency is Currency.actions else "vendor credits"


def _limit_of(holder: Organization | Project, currency: Currency) -> int | None:
    return holder.limit_actions if currency is Currency.actions else holder.limit_vendor_credits


async def set_limits(
    *, session: AsyncSession, holder: Organization | Project, limits: MonthlyLimits
) -> None:
    """Replaces the organisation's or the project's monthly limits (None clears one)."""
    holder.limit_actions = limits.micros(Currency.actions)
    holder.limit_vendor_credits = limits.micros(Currency.vendor_credits)
    await session.flush()


def limits_of(holder: Organization | Project) -> MonthlyLimits:
    return MonthlyLimits.from_micros(holder.limit_actions, holder.limit_vendor_credits)


async def set_alerts(
    *, session: AsyncSession, org: Organization, alerts: AlertsIn, box: SecretBox
) -> None:
    """The organisation's thresholds and webhook; the URL is kept encrypted."""
    org.alert_thresholds = alerts.thresholds or None
    org.alert_webhook_ciphertext = (
        None if alerts.webhook_url is None else box.encrypt(alerts.webhook_url)
    )
    await session.flush()


def alerts_of(org: Organization, box: SecretBox) -> AlertsOut:
    host = None
    if org.alert_webhook_ciphertext is not None:
        host = httpx.URL(box.decrypt(org.alert_webhook_ciphertext)).host or None
    return AlertsOut(thresholds=list(org.alert_thresholds or []), webhook_host=host)


async def _record_alerts(
    session: AsyncSession,
    org: Organization,
    currency: Currency,
    *,
    cap: int,
    used: int,
    now: datetime,
) -> None:
    """One alert per threshold `used` reached, currency and period: the unique key decides
    which debit records it, so concurrent and retried debits alert once. Every reached
    threshold is tried, not only the ones this debit crossed, so one that a race skipped is
    caught by the next debit."""
    start, _ = period_of(now)
    for threshold in reached_thresholds(list(org.alert_thresholds or []), cap, used):
        values = {
            "org_id": org.id,
            "currency": currency.value,
            "threshold": threshold,
            "period_start": start,
            "used": used,
            "cap": cap,
            "delivery": "pending" if org.alert_webhook_ciphertext else "none",
            "created_at": utcnow(),
        }
        key = ["org_id", "currency", "threshold", "period_start"]
        if not await insert_once(session, CreditAlert, values, key=key):
            continue
        await audit.record(
            session=session,
            org_id=org.id,
            project_id=None,
            actor=SYSTEM,
            action=AuditAction.credits_threshold_reached,
            target=Target("credits", currency.value),
            detail={
                "currency": currency.value,
                "threshold": threshold,
                "used": as_amount(used, currency),
                "limit": as_amount(cap, currency),
            },
        )


async def credits_of(
    *,
    session: AsyncSession,
    plans: PlanBook,
    org_id: int,
    box: SecretBox,
    now: datetime | None = None,
) -> CreditsOut:
    org = await get_org(session=session, org_id=org_id)
    plan = plans.plan(org.plan)
    now = now or utcnow()
    start, end = period_of(now)
    return CreditsOut(
        plan=plans.plan_name(org.plan),
        period_start=start,
        period_end=end,
        actions=await _allowance(
            session, org_id, plan.included_micros(Currency.actions), now, Currency.actions
        ),
        vendor_credits=await _allowance(
            session,
            org_id,
            plan.included_micros(Currency.vendor_credits),
            now,
            Currency.vendor_credits,
        ),
        limits=plans.limits(org.plan),
        monthly_limits=limits_of(org),
        projects=await _project_uses(session, org_id, now),
        alerts=alerts_of(org, box),
    )


async def _project_uses(session: AsyncSession, org_id: int, now: datetime) -> list[ProjectUse]:
    """Each project's limits and what its debits spent this period, from their totals."""
    start, _ = period_of(now)
    spent = select(CreditTotal.project_id, CreditTotal.currency, CreditTotal.used).where(
        CreditTotal.org_id == org_id,
        CreditTotal.period_start == start,
        CreditTotal.project_id != ORG_WIDE,
    )
    used = {(row[0], row[1]): int(row[2]) for row in await session.execute(spent)}
    projects = await session.scalars(
        select(Project).where(Project.org_id == org_id).order_by(Project.created_at, Project.id)
    )
    return [
        ProjectUse(
            project_id=project.id,
            name=project.name,
            limits=limits_of(project),
            actions_used=as_amount(used.get((project.id, "actions"), 0), Currency.actions),
            vendor_credits_used=as_amount(
                used.get((project.id, "vendor_credits"), 0), Currency.vendor_credits
            ),
        )
        for project in projects
    ]


async def _allowance(
    session: AsyncSession, org_id: int, included: int | None, now: datetime, currency: Currency
) -> Allowance:
    """One currency this period: what the plan includes, what was used, what grants remain,
    and what may still be spent (the allowance left, then the grants)."""
    standing = await _standing(session, org_id, currency, now)
    used, paid_by_grants, granted = standing.used, standing.paid_by_grants, standing.granted
    remaining = None
    if included is not None:
        remaining = max(0, included - (used - paid_by_grants)) + granted
    return Allowance(
        included=None if included is None else as_amount(included, currency),
        used=as_amount(used, currency),
        granted=as_amount(granted, currency),
        remaining=None if remaining is None else as_amount(remaining, currency),
    )


async def _project_and_org(session: AsyncSession, project_id: str) -> tuple[Project, Organization]:
    """The project and its organisation, in one query."""
    found = (
        await session.execute(
            select(Project, Organization)
            .join(Organization, Organization.id == Project.org_id)
            .where(Project.id == project_id)
        )
    ).first()
    if found is None:
        raise NotFound(f"project {project_id} not found")
    return found[0], found[1]


async def _insert(
    session: AsyncSession,
    *,
    org_id: int,
    project_id: str | None,
    kind: EntryKind,
    currency: Currency,
    micros: int,
    from_grant: int,
    key: str,
    note: str | None,
    now: datetime,
) -> bool:
    """The entry, once per `key`, and (only when it is new, so that a retried entry never
    counts twice) its amounts added to the totals in the same transaction."""
    values = {
        "org_id": org_id,
        "project_id": project_id,
        "kind": kind.value,
        "currency": currency.value,
        "amount": micros,
        "from_grant": from_grant,
        "idempotency_key": key,
        "note": note,
        "created_at": now,
    }
    if not await insert_once(session, CreditEntry, values, key=["idempotency_key"]):
        return False
    debit = kind is EntryKind.debit
    await _add_to_totals(
        session,
        org_id=org_id,
        project_id=project_id,
        currency=currency,
        period_start=period_of(now)[0],
        used=micros if debit else 0,
        paid_by_grants=from_grant if debit else 0,
        granted=0 if debit else micros,
    )
    return True


async def _add_to_totals(
    session: AsyncSession,
    *,
    org_id: int,
    project_id: str | None,
    currency: Currency,
    period_start: datetime,
    used: int,
    paid_by_grants: int,
    granted: int,
) -> None:
    """Adds one entry to each total it counts in, in one statement: an upsert whose addition
    the database does atomically, so concurrent entries of an organisation all count (on
    PostgreSQL the second waits on the first's row lock; SQLite has one writer)."""
    scopes = [(period_start, ORG_WIDE), (ALL_TIME, ORG_WIDE)]
    if project_id is not None:
        scopes.append((period_start, project_id))
    rows = [
        {
            "org_id": org_id,
            "currency": currency.value,
            "period_start": start,
            "project_id": scope,
            "used": used,
            "paid_by_grants": paid_by_grants,
            "granted": granted,
        }
        for start, scope in scopes
    ]
    # The rows as parameters of one statement (executemany), whose compiled form is cached.
    await session.execute(_totals_upsert(session.get_bind().dialect.name), rows)


@functools.cache
def _totals_upsert(dialect: str) -> Insert:
    """Adds its rows to the totals they name: an upsert whose addition the database does."""
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(CreditTotal)
    return statement.on_conflict_do_update(
        index_elements=["org_id", "currency", "period_start", "project_id"],
        set_={
            "used": CreditTotal.used + statement.excluded.used,
            "paid_by_grants": CreditTotal.paid_by_grants + statement.excluded.paid_by_grants,
            "granted": CreditTotal.granted + statement.excluded.granted,
        },
    )


@dataclass(frozen=True)
class _Standing:
    used: int
    """This period's debits of the organisation."""
    paid_by_grants: int
    """The part of `used` that grants paid."""
    project_used: int
    """This period's debits of one project."""
    granted: int
    """Grants less what debits took from them, over all time."""


# Built once: a debit reads and adds to the totals, and building these statements again
# for each one cost as much as running them.
_STANDING = select(
    CreditTotal.period_start,
    CreditTotal.project_id,
    CreditTotal.used,
    CreditTotal.paid_by_grants,
    CreditTotal.granted,
).where(
    CreditTotal.org_id == bindparam("org_id"),
    CreditTotal.currency == bindparam("currency"),
    or_(
        and_(
            CreditTotal.period_start == bindparam("start"),
            CreditTotal.project_id.in_(bindparam("scopes", expanding=True)),
        ),
        and_(CreditTotal.period_start == ALL_TIME, CreditTotal.project_id == ORG_WIDE),
    ),
)


async def _standing(
    session: AsyncSession,
    org_id: int,
    currency: Currency,
    now: datetime,
    project_id: str = ORG_WIDE,
) -> _Standing:
    """The organisation's totals in `currency` (and the project's, if given), read in one
    query of (at most) three rows."""
    start, _ = period_of(now)
    scopes = [ORG_WIDE, project_id]
    rows = await session.execute(
        _STANDING, {"org_id": org_id, "currency": currency.value, "start": start, "scopes": scopes}
    )
    used = paid_by_grants = project_used = granted = 0
    for period_start, scope, row_used, row_paid, row_granted in rows:
        if period_start == ALL_TIME:
            granted = int(row_granted) - int(row_paid)
        elif scope == ORG_WIDE:
            used, paid_by_grants = int(row_used), int(row_paid)
        else:
            project_used = int(row_used)
    return _Standing(used, paid_by_grants, project_used, granted)
