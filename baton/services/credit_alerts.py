"""Delivering usage alerts to their organisation's webhook. A debit records its alert in its
own transaction (baton/db/repositories/credits.py); this sends it afterwards, from the
worker, so a slow or failing webhook never holds or fails a debit. Each alert is claimed
before it is sent, so two workers never send the same one: an alert is sent at most once,
and a failed delivery is logged and not tried again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.tables import CreditAlert, Organization
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


async def deliver_pending(
    *, session_factory: async_sessionmaker[AsyncSession], box: SecretBox, policy: EgressPolicy
) -> int:
    """Sends the alerts waiting for their webhook; how many were sent."""
    async with session_factory() as session:
        waiting = list(
            await session.scalars(
                select(CreditAlert.id)
                .where(CreditAlert.delivery == PENDING)
                .order_by(CreditAlert.id)
                .limit(BATCH)
            )
        )
    sent = 0
    for alert_id in waiting:
        sent += await _deliver(session_factory, box, policy, alert_id)
    return sent


async def _deliver(
    session_factory: async_sessionmaker[AsyncSession],
    box: SecretBox,
    policy: EgressPolicy,
    alert_id: int,
) -> int:
    async with session_factory.begin() as session:
        claimed = await session.execute(
            update(CreditAlert)
            .where(CreditAlert.id == alert_id, CreditAlert.delivery == PENDING)
            .values(delivery=SENDING)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return 0  # another worker has it
        alert = await session.get_one(CreditAlert, alert_id)
        org = await session.get_one(Organization, alert.org_id)
        ciphertext, body = org.alert_webhook_ciphertext, alert_body(alert)
    outcome = FAILED
    if ciphertext is not None:
        outcome = await _post(box.decrypt(ciphertext), body, policy, alert_id)
    async with session_factory.begin() as session:
        await session.execute(
            update(CreditAlert).where(CreditAlert.id == alert_id).values(delivery=outcome)
        )
    return 1 if outcome == SENT else 0


async def _post(url: str, body: dict[str, Any], policy: EgressPolicy, alert_id: int) -> str:
    """POSTs through the egress guard; only the host is logged (the URL may hold a token)."""
    host = httpx.URL(url).host
    try:
        result = await http.fetch(
            "POST", url, policy=policy, json=body, timeout=TIMEOUT_S, max_redirects=0
        )
    except BatonError as exc:
        logger.warning("credit alert %s: the webhook on %s failed: %s", alert_id, host, exc.code)
        return FAILED
    if not 200 <= result.status < 300:
        logger.warning(
            "credit alert %s: the webhook on %s answered %s", alert_id, host, result.status
        )
        return FAILED
    return SENT


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
