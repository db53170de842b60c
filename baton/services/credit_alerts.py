"""Delivering usage alerts to their organisation's webhook. A debit records its alert in its
own transaction (baton/db/repositories/credits.py); this sends it afterwards, from the
worker, so a slow or failing webhook never holds or fails a debit.

Delivery is at least once, with bounded retries. An alert is claimed before it is sent (two
workers never send it at the same time) for CLAIM_S: a worker that dies between the claim
and the answer leaves the claim to lapse, and the alert is claimed again. A webhook that fails
(no answer, or not 2xx) is tried again after a backoff, up to MAX_ATTEMPTS in all; then the
alert is `failed`, with the reason on the organisation's audit log. A webhook that took an
alert but whose answer was lost may get it twice: the `Idempotency-Key` header is the same on
every attempt."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import audit
from baton.db.tables import CreditAlert, Organization, utcnow
from baton.domain.audit import SYSTEM, AuditAction, Target
from baton.domain.credits import Currency, as_amount, period_of
from baton.domain.egress import EgressPolicy
from baton.errors import BatonError
from baton.integrations import http
from baton.security import SecretBox

logger = logging.getLogger("baton.credit_alerts")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
# How many alerts one pass sends at most, and how long one webhook may take.
BATCH = 50
TIMEOUT_S = 10.0
# How often the worker looks for alerts to send.
INTERVAL_S = 5.0
# How long a claim holds (well past a webhook's timeout), how many attempts an alert gets,
# and the wait after the first failed one (doubled after each, up to BACKOFF_MAX_S).
CLAIM_S = 60.0
MAX_ATTEMPTS = 5
BACKOFF_S = 10.0
BACKOFF_MAX_S = 600.0


async def deliver_forever(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    box: SecretBox,
    policy: EgressPolicy,
    interval: float = INTERVAL_S,
) -> None:
    """The worker's loop: a pass every `interval`; a database away only delays alerts."""
    while True:
        try:
            await deliver_pending(session_factory=session_factory, box=box, policy=policy)
        except Exception:
            logger.warning("could not deliver usage alerts", exc_info=True)
        await asyncio.sleep(interval)


def _due(now: datetime) -> Any:
    """Alerts to send now: pending ones whose backoff is over, and claims that lapsed."""
    return or_(
        and_(
            CreditAlert.delivery == PENDING,
            or_(CreditAlert.due_at.is_(None), CreditAlert.due_at <= now),
        ),
        and_(CreditAlert.delivery == SENDING, CreditAlert.due_at <= now),
    )


async def deliver_pending(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    box: SecretBox,
    policy: EgressPolicy,
    now: datetime | None = None,
) -> int:
    """Sends the alerts due for their webhook; how many were sent. `now`: the time to act
    at (the clock unless a test says otherwise)."""
    now = now or utcnow()
    async with session_factory() as session:
        waiting = list(
            await session.scalars(
                select(CreditAlert.id).where(_due(now)).order_by(CreditAlert.id).limit(BATCH)
            )
        )
    sent = 0
    for alert_id in waiting:
        sent += await _deliver(session_factory, box, policy, alert_id, now)
    return sent


async def _deliver(
    session_factory: async_sessionmaker[AsyncSession],
    box: SecretBox,
    policy: EgressPolicy,
    alert_id: int,
    now: datetime,
) -> int:
    async with session_factory.begin() as session:
        claimed = await session.execute(
            update(CreditAlert)
            .where(CreditAlert.id == alert_id, _due(now))
            .values(
                delivery=SENDING,
                due_at=now + timedelta(seconds=CLAIM_S),
                attempts=CreditAlert.attempts + 1,
            )
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return 0  # another worker has it
        alert = await session.get_one(CreditAlert, alert_id)
        org = await session.get_one(Organization, alert.org_id)
        ciphertext, body, attempts = org.alert_webhook_ciphertext, alert_body(alert), alert.attempts
    if ciphertext is None:
        error: str | None = "the organisation has no webhook any more"
        attempts = MAX_ATTEMPTS
    else:
        error = await _post(box.decrypt(ciphertext), body, policy, alert_id)
    async with session_factory.begin() as session:
        alert = await session.get_one(CreditAlert, alert_id)
        if error is None:
            alert.delivery, alert.due_at = SENT, None
        elif attempts < MAX_ATTEMPTS:
            wait = min(BACKOFF_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
            alert.delivery, alert.due_at = PENDING, now + timedelta(seconds=wait)
        else:
            alert.delivery, alert.due_at = FAILED, None
            await audit.record(
                session=session,
                org_id=alert.org_id,
                project_id=None,
                actor=SYSTEM,
                action=AuditAction.credits_alert_failed,
                target=Target("credits", alert.currency),
                detail={
                    "currency": alert.currency,
                    "threshold": alert.threshold,
                    "attempts": attempts,
                    "reason": error,
                },
            )
    return 1 if error is None else 0


async def _post(url: str, body: dict[str, Any], policy: EgressPolicy, alert_id: int) -> str | None:
    """POSTs through the egress guard: None when the webhook took it, else why not. Only the
    host is logged or said (the URL may hold a token)."""
    host = httpx.URL(url).host
    try:
        result = await http.fetch(
            "POST",
            url,
            policy=policy,
            json=body,
            headers={"Idempotency-Key": f"credit-alert-{alert_id}"},
            timeout=TIMEOUT_S,
            max_redirects=0,
        )
    except BatonError as exc:
        logger.warning("credit alert %s: the webhook on %s failed: %s", alert_id, host, exc.code)
        return f"the webhook on {host} failed: {exc.code}"
    if not 200 <= result.status < 300:
        logger.warning(
            "credit alert %s: the webhook on %s answered %s", alert_id, host, result.status
        )
        return f"the webhook on {host} answered {result.status}"
    return None


def alert_body(alert: CreditAlert) -> dict[str, Any]:
    """The JSON a webhook receives: which organisation, currency and threshold, and the use
    and allowance or limit it is a percentage of."""
    currency = Currency(alert.currency)
    start, end = period_of(alert.period_start)
    return {
        "event": "credits.threshold_reached",
        "organization_id": alert.org_id,
        "currency": currency.value,
        "threshold": alert.threshold,
        "used": as_amount(alert.used, currency),
        "limit": as_amount(alert.cap, currency),
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
    }
