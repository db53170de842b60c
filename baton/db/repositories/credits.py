"""The credits ledger: grants, debits, and what an organisation has left this period."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.idempotent import insert_once
from baton.db.tables import CreditEntry, Organization, Project, utcnow
from baton.domain.credits import (
    MICROS,
    Allowance,
    CreditsOut,
    Currency,
    EntryKind,
    PlanBook,
    as_amount,
    period_of,
    tool_run_key,
)
from baton.errors import NotFound, OutOfCredits


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
    (a balance below zero is what the next start is refused for)."""
    org = await get_org(session=session, org_id=org_id)
    included = plans.plan(org.plan).included_micros(currency)
    from_grant = 0
    if included is not None:
        used, paid_by_grants = await _period_debits(session, org_id, currency, now or utcnow())
        allowance_left = max(0, included - (used - paid_by_grants))
        from_grant = micros - min(micros, allowance_left)
    return await _insert(
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
    `currency` left (its allowance this period, then its grants)."""
    org = await get_org(session=session, org_id=await _org_of(session, project_id))
    plan = plans.plan(org.plan)
    included = plan.included_micros(currency)
    if included is None:
        return
    now = utcnow()
    used, paid_by_grants = await _period_debits(session, org.id, currency, now)
    left = max(0, included - (used - paid_by_grants)) + await _grant_balance(
        session, org.id, currency
    )
    if left >= micros:
        return
    allowance = await _allowance(session, org.id, included, now, currency)
    _, renews = period_of(now)
    name = plans.plan_name(org.plan)
    what = "actions" if currency is Currency.actions else "vendor credits"
    raise OutOfCredits(
        f"the organisation has no {what} left this period (plan {name}: "
        f"{allowance.included} a month, {allowance.used} used, {allowance.granted} granted); "
        f"it renews at {renews.isoformat()}, or an operator can grant more",
        details={"plan": name, "period_end": renews.isoformat(), "currency": currency.value},
    )


async def credits_of(
    *, session: AsyncSession, plans: PlanBook, org_id: int, now: datetime | None = None
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
    )


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
    org_id = await session.scalar(select(Project.org_id).where(Project.id == project_id))
    if org_id is None:
        raise NotFound(f"project {project_id} not found")
    return int(org_id)


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
    session: AsyncSession, org_id: int, currency: Currency, now: datetime
) -> tuple[int, int]:
    """This period's debits: their total, and the part of it grants paid."""
    start, end = period_of(now)
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(CreditEntry.amount), 0),
                func.coalesce(func.sum(CreditEntry.from_grant), 0),
            ).where(
                CreditEntry.org_id == org_id,
                CreditEntry.currency == currency.value,
                CreditEntry.kind == EntryKind.debit.value,
                CreditEntry.created_at >= start,
                CreditEntry.created_at < end,
            )
        )
    ).one()
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
