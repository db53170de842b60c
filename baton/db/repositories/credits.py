"""The credits ledger: grants, debits, and what an organisation has left this period."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

import httpx
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.idempotent import insert_once
from baton.db.repositories import audit
from baton.db.tables import CreditAlert, CreditEntry, Organization, Project, utcnow
from baton.domain.audit import SYSTEM, AuditAction, Target
from baton.domain.credits import (
    MICROS,
    AlertsIn,
    AlertsOut,
    Allowance,
    CreditsOut,
    Currency,
    EntryKind,
    MonthlyLimits,
    PlanBook,
    ProjectUse,
    alert_cap,
    as_amount,
    period_of,
    reached_thresholds,
    tool_run_key,
)
from baton.errors import NotFound, OutOfCredits
from baton.security import SecretBox


async def get_org(*, session: AsyncSession, org_id: int) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} not found")
    return org


async def set_plan(*, session: AsyncSession, plans: PlanBook, org_id: int, plan: str) -> None:
    """Moves the organisation to `plan` (InvalidInput for a plan the book does not have)."""
    plans.plan(plan)
    org = await get_org(session=session, org_id=org_id)
    org.plan = plan
    await session.flush()


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
    (a balance below zero is what the next start is refused for). A debit that takes the
    organisation's use to an alert threshold records the alert with it."""
    org = await get_org(session=session, org_id=org_id)
    now = now or utcnow()
    included = plans.plan(org.plan).included_micros(currency)
    cap = alert_cap(included, _limit_of(org, currency)) if org.alert_thresholds else None
    from_grant = 0
    used = 0
    if included is not None or cap is not None:
        used, paid_by_grants = await _period_debits(session, org_id, currency, now)
        if included is not None:
            allowance_left = max(0, included - (used - paid_by_grants))
            from_grant = micros - min(micros, allowance_left)
    charged = await _insert(
        session,
        org_id=org_id,
        project_id=project_id,
        kind=EntryKind.debit,
        currency=currency,
        micros=micros,
        from_grant=from_grant,
        key=key,
        note=None,
    )
    if charged and cap is not None:
        await _record_alerts(session, org, currency, cap=cap, used=used + micros, now=now)
    return charged


async def charge_tool_run(
    *, session: AsyncSession, plans: PlanBook, project_id: str, run_id: str
) -> bool:
    """The action a tool run costs, once per run (counted whether the tool succeeds or not)."""
    return await debit(
        session=session,
        plans=plans,
        org_id=await _org_of(session, project_id),
        project_id=project_id,
        currency=Currency.actions,
        micros=MICROS,
        key=tool_run_key(run_id),
    )


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
    price = plans.prices.get(model)
    if price is None:
        return False
    micros = price.cost_micros(input_tokens, output_tokens, cached_input_tokens)
    if micros == 0:
        return False
    return await debit(
        session=session,
        plans=plans,
        org_id=await _org_of(session, project_id),
        project_id=project_id,
        currency=Currency.vendor_credits,
        micros=micros,
        key=key,
    )


async def require_actions(
    *, session: AsyncSession, plans: PlanBook, project_id: str, actions: int = 1
) -> None:
    """Raises OutOfCredits (402) unless the project's organisation can pay `actions` more.
    On a plan without a limit this reads nothing but the organisation's plan."""
    await require(
        session=session,
        plans=plans,
        project_id=project_id,
        currency=Currency.actions,
        micros=actions * MICROS,
    )


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
    the project and the organisation only."""
    project = await _project(session, project_id)
    org = await get_org(session=session, org_id=project.org_id)
    included = plans.plan(org.plan).included_micros(currency)
    org_limit, project_limit = _limit_of(org, currency), _limit_of(project, currency)
    if included is None and org_limit is None and project_limit is None:
        return
    now = utcnow()
    used, paid_by_grants = await _period_debits(session, org.id, currency, now)
    if included is not None:
        left = max(0, included - (used - paid_by_grants)) + await _grant_balance(
            session, org.id, currency
        )
        if left < micros:
            await _raise_out_of_credits(session, plans, org, included, currency, now)
    if org_limit is not None and org_limit - used < micros:
        _raise_limit_reached("organisation", org_limit, used, currency, now)
    if project_limit is not None:
        project_used, _ = await _period_debits(session, org.id, currency, now, project_id)
        if project_limit - project_used < micros:
            _raise_limit_reached("project", project_limit, project_used, currency, now)


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
    """Each project's limits and what its debits spent this period, in one query."""
    start, end = period_of(now)
    spent = (
        select(
            CreditEntry.project_id,
            CreditEntry.currency,
            func.sum(CreditEntry.amount).label("used"),
        )
        .where(
            CreditEntry.org_id == org_id,
            CreditEntry.kind == EntryKind.debit.value,
            CreditEntry.created_at >= start,
            CreditEntry.created_at < end,
        )
        .group_by(CreditEntry.project_id, CreditEntry.currency)
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
    used, paid_by_grants = await _period_debits(session, org_id, currency, now)
    granted = await _grant_balance(session, org_id, currency)
    remaining = None
    if included is not None:
        remaining = max(0, included - (used - paid_by_grants)) + granted
    return Allowance(
        included=None if included is None else as_amount(included, currency),
        used=as_amount(used, currency),
        granted=as_amount(granted, currency),
        remaining=None if remaining is None else as_amount(remaining, currency),
    )


async def _org_of(session: AsyncSession, project_id: str) -> int:
    return (await _project(session, project_id)).org_id


async def _project(session: AsyncSession, project_id: str) -> Project:
    project = await session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found")
    return project


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
) -> bool:
    values = {
        "org_id": org_id,
        "project_id": project_id,
        "kind": kind.value,
        "currency": currency.value,
        "amount": micros,
        "from_grant": from_grant,
        "idempotency_key": key,
        "note": note,
        "created_at": utcnow(),
    }
    return await insert_once(session, CreditEntry, values, key=["idempotency_key"]) > 0


async def _period_debits(
    session: AsyncSession,
    org_id: int,
    currency: Currency,
    now: datetime,
    project_id: str | None = None,
) -> tuple[int, int]:
    """This period's debits (of one project, when given): their total, and the part of it
    grants paid."""
    start, end = period_of(now)
    query = select(
        func.coalesce(func.sum(CreditEntry.amount), 0),
        func.coalesce(func.sum(CreditEntry.from_grant), 0),
    ).where(
        CreditEntry.org_id == org_id,
        CreditEntry.currency == currency.value,
        CreditEntry.kind == EntryKind.debit.value,
        CreditEntry.created_at >= start,
        CreditEntry.created_at < end,
    )
    if project_id is not None:
        query = query.where(CreditEntry.project_id == project_id)
    row = (await session.execute(query)).one()
    return int(row[0]), int(row[1])


async def _grant_balance(session: AsyncSession, org_id: int, currency: Currency) -> int:
    """Grants less what debits took from them, over all time (grants roll over)."""
    total = await session.scalar(
        select(
            func.coalesce(
                func.sum(
                    case(
                        (CreditEntry.kind == EntryKind.grant.value, CreditEntry.amount),
                        else_=-CreditEntry.from_grant,
                    )
                ),
                0,
            )
        ).where(CreditEntry.org_id == org_id, CreditEntry.currency == currency.value)
    )
    return int(total or 0)
