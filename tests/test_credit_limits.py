"""Monthly limits and usage alerts: an organisation's admins set limits below the plan, for
the organisation and per project; reaching one refuses like running out. Alerts at chosen
thresholds are recorded once per threshold, currency and period, in the audit log and, with
a webhook, POSTed to it after the debit committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import credits as credit_repo
from baton.db.tables import CreditAlert, utcnow
from baton.domain.credits import Currency, PlanBook
from baton.domain.egress import EgressPolicy
from baton.errors import OutOfCredits
from baton.security import SecretBox
from baton.services import credit_alerts
from baton.settings import Settings
from tests.fakes.webhook_server import FakeWebhook
from tests.support import Tenant, api_client, assert_error, auth, create_token
from tests.support.factories import FINAL, make_agent, make_tool, start_task, task_in
from tests.test_audit import entries
from tests.test_credits import credits, listed_as_paused, run_tool, set_plan, spend_actions

Sessions = async_sessionmaker[AsyncSession]
PLANS = PlanBook()


async def put_limits(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], project: bool = False
) -> httpx.Response:
    path = tenant.url("/credits/limits") if project else "/api/v1/credits/limits"
    return await api.put(path, json=body, headers=tenant.headers)


@pytest.fixture(scope="module")
def webhook() -> Iterator[FakeWebhook]:
    server = FakeWebhook().start()
    yield server
    server.stop()


@pytest.fixture
async def alerting_api(
    settings: Settings, temporal_env: WorkflowEnvironment, webhook: FakeWebhook
) -> AsyncIterator[httpx.AsyncClient]:
    """The API of an installation that lets http steps (and so webhooks) reach the local
    receiver."""
    allowed = settings.model_copy(update={"http_allow_hosts": [webhook.host]})
    async with api_client(allowed, temporal_env.client) as client:
        yield client


async def test_an_organisations_limit_refuses_tool_runs_naming_it_until_cleared(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    tool = await make_tool(api, tenant)
    put = await put_limits(api, tenant, {"actions": 2, "vendor_credits": 0.5})
    assert put.status_code == 200, put.text
    assert put.json() == {"actions": 2, "vendor_credits": 0.5}
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 2, "limited")

    refused = await run_tool(api, tenant, tool, {"text": "x"})
    error = assert_error(refused, 402, "out_of_credits")["error"]
    assert "organisation's monthly limit of 2 actions" in error["message"]
    assert error["details"]["limit"] == "organisation"
    body = await credits(api, tenant)
    assert body["monthly_limits"] == {"actions": 2, "vendor_credits": 0.5}
    assert body["projects"][0]["actions_used"] == 2
    got = await api.get("/api/v1/credits/limits", headers=tenant.headers)
    assert got.json() == {"actions": 2, "vendor_credits": 0.5}

    cleared = await put_limits(api, tenant, {"actions": None, "vendor_credits": None})
    assert cleared.json() == {"actions": None, "vendor_credits": None}
    accepted = await run_tool(api, tenant, tool, {"text": "x"})
    assert accepted.status_code == 201, accepted.text
    logged = await entries(api, tenant, action="credits.limits_set")
    assert [e["detail"] for e in logged] == [
        {"actions": None, "vendor_credits": None},
        {"actions": 2, "vendor_credits": 0.5},
    ]


async def test_a_projects_limit_counts_only_its_own_debits(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    tool = await make_tool(api, tenant)
    put = await put_limits(api, tenant, {"actions": 3}, project=True)
    assert put.status_code == 200, put.text
    assert put.json() == {"actions": 3, "vendor_credits": None}
    async with session_factory.begin() as session:
        # Spent by the organisation, not by the project: the project's limit is untouched.
        for n in range(5):
            await credit_repo.debit(
                session=session,
                plans=PLANS,
                org_id=tenant.org_id,
                project_id=None,
                currency=Currency.actions,
                micros=1_000_000,
                key=f"org-wide:{n}",
            )
        await spend_actions(session, tenant, 2, "project")
    accepted = await run_tool(api, tenant, tool, {"text": "x"})
    assert accepted.status_code == 201, accepted.text

    refused = await run_tool(api, tenant, tool, {"text": "x"})
    error = assert_error(refused, 402, "out_of_credits")["error"]
    assert "project's monthly limit of 3 actions" in error["message"]
    assert error["details"]["limit"] == "project"
    (project,) = (await credits(api, tenant))["projects"]
    assert (project["project_id"], project["actions_used"]) == (tenant.project_id, 3)
    assert project["limits"] == {"actions": 3, "vendor_credits": None}
    logged = await entries(api, tenant, action="credits.limits_set")
    assert logged[0]["project_id"] == tenant.project_id


async def test_a_limit_on_vendor_credits_refuses_a_model_call(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    """The check a task's model call makes before it is sent (it pauses on OutOfCredits)."""
    await put_limits(api, tenant, {"vendor_credits": 0.25}, project=True)
    async with session_factory.begin() as session:
        await credit_repo.debit(
            session=session,
            plans=PLANS,
            org_id=tenant.org_id,
            project_id=tenant.project_id,
            currency=Currency.vendor_credits,
            micros=250_000,
            key="llm:spent",
        )
    async with session_factory() as session:
        with pytest.raises(OutOfCredits, match=r"monthly limit of 0\.25 vendor credits"):
            await credit_repo.require(
                session=session,
                plans=PLANS,
                project_id=tenant.project_id,
                currency=Currency.vendor_credits,
            )
        # Actions have no limit: still allowed.
        await credit_repo.require(
            session=session, plans=PLANS, project_id=tenant.project_id, currency=Currency.actions
        )


async def test_a_task_pauses_at_a_limit_and_resumes_when_the_limit_is_cleared(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    await put_limits(api, tenant, {"actions": 0}, project=True)
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "a"}')
    paused = await task_in(api, tenant, task_id, {"out-of-credits", *FINAL})
    assert paused["status"] == "out-of-credits"
    await listed_as_paused(temporal_env, paused["workflow_id"])

    cleared = await put_limits(api, tenant, {"actions": None}, project=True)
    assert cleared.status_code == 200, cleared.text
    task = await task_in(api, tenant, task_id, FINAL | {"idle"})
    assert task["status"] in {"completed", "idle"}, task["error"]
    assert (await credits(api, tenant))["projects"][0]["actions_used"] == 1


async def test_without_limits_the_check_reads_no_more_than_before(
    engine: AsyncEngine, session_factory: Sessions, tenant: Tenant
):
    """The project and its organisation, in one query, and nothing else: no ledger sums
    on a plan without a limit."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with session_factory() as session:
            await credit_repo.require(
                session=session,
                plans=PLANS,
                project_id=tenant.project_id,
                currency=Currency.actions,
            )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements
    assert not any("credit_entries" in s for s in statements)


async def test_limits_refuse_bad_input_and_callers_without_the_role(
    api: httpx.AsyncClient, tenant: Tenant
):
    assert "actions" in str(assert_error(await put_limits(api, tenant, {"actions": -1}), 422))
    assert "colour" in str(assert_error(await put_limits(api, tenant, {"colour": 1}), 422))
    editor = await create_token(api, tenant.headers, role="editor")
    refused = await api.put(
        "/api/v1/credits/limits", json={"actions": 1}, headers=auth(editor["token"])
    )
    assert_error(refused, 403)
    scoped = await create_token(api, tenant.headers, role="admin", project_id=tenant.project_id)
    headers = auth(scoped["token"])
    assert_error(await api.put("/api/v1/credits/limits", json={}, headers=headers), 403)
    # A project's admin sets the project's own limits.
    own = await api.put(tenant.url("/credits/limits"), json={"actions": 7}, headers=headers)
    assert own.status_code == 200, own.text


async def test_alerts_are_logged_and_sent_once_per_threshold_after_the_debit(
    alerting_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    settings: Settings,
    webhook: FakeWebhook,
):
    api = alerting_api
    await set_plan(session_factory, tenant, "free")  # 200 actions a month
    await put_limits(api, tenant, {"actions": 10})  # in force: the smaller, 10
    url = webhook.url("token-in-the-path-5f4e")
    put = await api.put(
        "/api/v1/credits/alerts",
        json={"thresholds": [100, 50, 80], "webhook_url": url},
        headers=tenant.headers,
    )
    assert put.status_code == 200, put.text
    assert put.json() == {"thresholds": [50, 80, 100], "webhook_host": "127.0.0.1"}
    got = await api.get("/api/v1/credits/alerts", headers=tenant.headers)
    assert "token-in-the-path" not in got.text
    webhook.received.clear()

    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 4, "below")
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 1, "crossing")  # 5 of 10: 50%
    logged = await entries(api, tenant, action="credits.threshold_reached")
    assert [e["detail"] for e in logged] == [
        {"currency": "actions", "threshold": 50, "used": 5, "limit": 10}
    ]

    # The worker's loop sends it after the debit committed.
    box, policy = SecretBox.from_settings(settings), EgressPolicy(frozenset({webhook.host}))
    loop = asyncio.create_task(
        credit_alerts.deliver_forever(
            session_factory=session_factory, box=box, policy=policy, interval=0.05
        )
    )
    try:
        async with asyncio.timeout(10):
            while not webhook.received:
                await asyncio.sleep(0.05)
    finally:
        loop.cancel()
    (sent,) = webhook.received
    assert sent["event"] == "credits.threshold_reached"
    assert (sent["organization_id"], sent["currency"], sent["threshold"]) == (
        tenant.org_id,
        "actions",
        50,
    )
    assert (sent["used"], sent["limit"]) == (5, 10)

    # A second debit past the same threshold, and a retried one, alert nothing more.
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 1, "past")
        await spend_actions(session, tenant, 1, "past")
    assert (
        await credit_alerts.deliver_pending(session_factory=session_factory, box=box, policy=policy)
        == 0
    )
    assert len(webhook.received) == 1
    assert len(await entries(api, tenant, action="credits.threshold_reached")) == 1

    # Two more cross 80%: one alert, for 80.
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 2, "eighty")
    assert (
        await credit_alerts.deliver_pending(session_factory=session_factory, box=box, policy=policy)
        == 1
    )
    assert [r["threshold"] for r in webhook.received] == [50, 80]
    logged = await entries(api, tenant, action="credits.alerts_set")
    assert logged[0]["detail"] == {"thresholds": "50,80,100", "webhook": True}
    assert "token-in-the-path" not in str(logged)


async def alert_at_half(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions, webhook: FakeWebhook
) -> None:
    """An alert at 50% of a limit of 2 actions, reached by one debit, for `webhook`."""
    put = await api.put(
        "/api/v1/credits/alerts",
        json={"thresholds": [50], "webhook_url": webhook.url("failing")},
        headers=tenant.headers,
    )
    assert put.status_code == 200, put.text
    limited = await put_limits(api, tenant, {"actions": 2})
    assert limited.status_code == 200, limited.text
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 1, f"half-{tenant.org_id}")


async def alert_of(session_factory: Sessions, tenant: Tenant) -> CreditAlert:
    async with session_factory() as session:
        alert = await session.scalar(select(CreditAlert).where(CreditAlert.org_id == tenant.org_id))
    assert alert is not None
    return alert


def deliver_at(
    settings: Settings, webhook: FakeWebhook, session_factory: Sessions
) -> Callable[[datetime], Awaitable[int]]:
    box, policy = SecretBox.from_settings(settings), EgressPolicy(frozenset({webhook.host}))

    async def at(now: datetime) -> int:
        return await credit_alerts.deliver_pending(
            session_factory=session_factory, box=box, policy=policy, now=now
        )

    return at


async def state(session_factory: Sessions, tenant: Tenant) -> tuple[str, int]:
    alert = await alert_of(session_factory, tenant)
    return alert.delivery, alert.attempts


# Other tests' organisations may have alerts due too: these look at their own alert only.


async def test_a_webhook_that_fails_first_is_tried_again_after_a_backoff_until_it_takes_it(
    alerting_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    settings: Settings,
    webhook: FakeWebhook,
):
    await alert_at_half(alerting_api, tenant, session_factory, webhook)
    key = f"credit-alert-{(await alert_of(session_factory, tenant)).id}"
    webhook.fail_first = 2
    deliver = deliver_at(settings, webhook, session_factory)
    now = utcnow()
    backoff = timedelta(seconds=credit_alerts.BACKOFF_S)

    await deliver(now)
    assert await state(session_factory, tenant) == ("pending", 1)
    await deliver(now + backoff / 2)  # not due yet: no attempt
    assert await state(session_factory, tenant) == ("pending", 1)
    await deliver(now + backoff)  # the second attempt fails too
    assert await state(session_factory, tenant) == ("pending", 2)
    await deliver(now + 2 * backoff)  # its backoff doubled: not yet
    assert await state(session_factory, tenant) == ("pending", 2)
    await deliver(now + 3 * backoff)

    assert await state(session_factory, tenant) == ("sent", 3)
    mine = [body for body in webhook.received if body["organization_id"] == tenant.org_id]
    assert len(mine) == 1 and mine[0]["threshold"] == 50
    # The same key on every attempt, so a receiver can tell a repeat.
    assert webhook.keys.count(key) == 3
    await deliver(now + 10 * backoff)  # sent: never again
    assert webhook.keys.count(key) == 3


async def test_an_alert_a_crashed_worker_claimed_is_sent_once_its_claim_lapses(
    alerting_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    settings: Settings,
    webhook: FakeWebhook,
):
    await alert_at_half(alerting_api, tenant, session_factory, webhook)
    claimed_at = utcnow()
    # As a worker leaves it that claimed the alert and died before it sent it.
    async with session_factory.begin() as session:
        await session.execute(
            update(CreditAlert)
            .where(CreditAlert.org_id == tenant.org_id)
            .values(
                delivery="sending",
                attempts=1,
                due_at=claimed_at + timedelta(seconds=credit_alerts.CLAIM_S),
            )
        )
    deliver = deliver_at(settings, webhook, session_factory)

    await deliver(claimed_at + timedelta(seconds=credit_alerts.CLAIM_S / 2))
    assert await state(session_factory, tenant) == ("sending", 1)  # still claimed
    await deliver(claimed_at + timedelta(seconds=credit_alerts.CLAIM_S + 1))
    assert await state(session_factory, tenant) == ("sent", 2)
    mine = [body for body in webhook.received if body["organization_id"] == tenant.org_id]
    assert len(mine) == 1


async def test_a_webhook_failing_every_attempt_ends_failed_on_the_audit_log_not_the_debit(
    alerting_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
    settings: Settings,
    webhook: FakeWebhook,
    caplog: pytest.LogCaptureFixture,
):
    webhook.status = 500
    try:
        await alert_at_half(alerting_api, tenant, session_factory, webhook)
        deliver = deliver_at(settings, webhook, session_factory)
        now = utcnow()
        for attempt in range(1, credit_alerts.MAX_ATTEMPTS):
            await deliver(now + timedelta(seconds=credit_alerts.BACKOFF_MAX_S * attempt))
            assert await state(session_factory, tenant) == ("pending", attempt)
        await deliver(now + timedelta(seconds=credit_alerts.BACKOFF_MAX_S * 10))
    finally:
        webhook.status = 200
    assert await state(session_factory, tenant) == ("failed", credit_alerts.MAX_ATTEMPTS)
    await deliver(now + timedelta(days=1))  # given up: no further attempt
    assert await state(session_factory, tenant) == ("failed", credit_alerts.MAX_ATTEMPTS)
    logged = await entries(alerting_api, tenant, action="credits.alert_failed")
    assert [e["detail"] for e in logged] == [
        {
            "currency": "actions",
            "threshold": 50,
            "attempts": credit_alerts.MAX_ATTEMPTS,
            "reason": "the webhook on 127.0.0.1 answered 500",
        }
    ]
    assert "answered 500" in caplog.text and "failing" not in caplog.text
    assert "failing" not in str(logged)
    assert (await credits(alerting_api, tenant))["actions"]["used"] == 1


async def test_alerts_refuse_a_webhook_the_egress_guard_forbids_and_bad_thresholds(
    api: httpx.AsyncClient, tenant: Tenant
):
    """127.0.0.1 is not allowed on a default installation, as for http steps."""
    blocked = await api.put(
        "/api/v1/credits/alerts",
        json={"thresholds": [50], "webhook_url": "http://127.0.0.1:9/hook"},
        headers=tenant.headers,
    )
    assert "webhook_url" in assert_error(blocked, 422)["error"]["message"]
    for body in ({"thresholds": [0]}, {"thresholds": [101]}, {"thresholds": list(range(1, 12))}):
        refused = await api.put("/api/v1/credits/alerts", json=body, headers=tenant.headers)
        assert "thresholds" in str(assert_error(refused, 422))
    not_http = await api.put(
        "/api/v1/credits/alerts",
        json={"thresholds": [50], "webhook_url": "ftp://example.com/x"},
        headers=tenant.headers,
    )
    assert "webhook_url" in assert_error(not_http, 422)["error"]["message"]
