"""Rate limits: a plan's requests_per_minute is counted per token in the database, so two API
instances share one count; the RateLimit headers say where a token stands on every answer,
and the request past the limit is a 429 with Retry-After. A token on a plan without a limit,
and a request without a token, are not counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from baton.db.repositories import rate_limits as rate_repo
from baton.db.tables import ApiToken, Organization, RateWindow, utcnow
from baton.domain.rate_limits import window_of
from baton.settings import Settings
from tests.support import Tenant, api_client, assert_error, auth, create_token

Sessions = async_sessionmaker[AsyncSession]
LIMIT = 5
CREDITS = "/api/v1/credits"
HEALTH = "/api/health"


@pytest.fixture
def metered_settings(settings: Settings, tmp_path: Path) -> Settings:
    plans = tmp_path / "plans.yaml"
    plans.write_text(f"metered:\n  requests_per_minute: {LIMIT}\n")
    return settings.model_copy(update={"plans_file": plans})


@pytest.fixture
async def metered_api(
    metered_settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(metered_settings, temporal_env.client) as client:
        yield client


@pytest.fixture
async def second_api(
    metered_settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """Another instance of the app (its own engine and state) on the same database."""
    async with api_client(metered_settings, temporal_env.client) as client:
        yield client


async def put_on_metered_plan(sessions: Sessions, tenant: Tenant) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(Organization).where(Organization.id == tenant.org_id).values(plan="metered")
        )


async def in_one_window() -> None:
    """Waits (at most 10 s) for a new minute when this one is nearly over, so the few
    requests a test makes are all counted in the same window."""
    _, seconds_left = window_of(utcnow())
    if seconds_left < 10:
        await asyncio.sleep(seconds_left)


def limit_headers(response: httpx.Response) -> tuple[int, int, int]:
    return (
        int(response.headers["RateLimit-Limit"]),
        int(response.headers["RateLimit-Remaining"]),
        int(response.headers["RateLimit-Reset"]),
    )


async def test_five_requests_pass_and_the_sixth_is_refused_with_retry_after(
    metered_api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    # Made before the plan has a limit, so making it is not counted.
    other = await create_token(metered_api, tenant.headers, role="viewer")
    await put_on_metered_plan(session_factory, tenant)
    await in_one_window()

    answers = [await metered_api.get(CREDITS, headers=tenant.headers) for _ in range(LIMIT + 1)]
    assert [r.status_code for r in answers[:LIMIT]] == [200] * LIMIT
    assert [limit_headers(r)[:2] for r in answers[:LIMIT]] == [
        (5, 4),
        (5, 3),
        (5, 2),
        (5, 1),
        (5, 0),
    ]
    assert all(1 <= limit_headers(r)[2] <= 60 for r in answers)
    assert "Retry-After" not in answers[0].headers

    refused = answers[LIMIT]
    error = assert_error(refused, 429, "rate_limited")["error"]
    assert "5 a minute" in error["message"] and "plan metered" in error["message"]
    assert error["details"]["limit"] == "requests_per_minute"
    assert limit_headers(refused)[:2] == (5, 0)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    # Another token of the same organisation has a count of its own.
    theirs = await metered_api.get(CREDITS, headers=auth(other["token"]))
    assert theirs.status_code == 200, theirs.text
    assert limit_headers(theirs)[:2] == (5, 4)


async def test_two_app_instances_on_one_database_share_the_count(
    metered_api: httpx.AsyncClient,
    second_api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: Sessions,
):
    await put_on_metered_plan(session_factory, tenant)
    await in_one_window()
    answers = []
    for n in range(LIMIT):
        api = metered_api if n % 2 == 0 else second_api
        answers.append(await api.get(CREDITS, headers=tenant.headers))
    assert [limit_headers(r)[1] for r in answers] == [4, 3, 2, 1, 0]
    assert_error(await second_api.get(CREDITS, headers=tenant.headers), 429, "rate_limited")
    assert_error(await metered_api.get(CREDITS, headers=tenant.headers), 429, "rate_limited")


async def test_a_plan_without_a_limit_and_a_request_without_a_token_are_not_counted(
    metered_api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    unlimited = await metered_api.get(CREDITS, headers=tenant.headers)
    assert unlimited.status_code == 200
    assert "RateLimit-Limit" not in unlimited.headers
    assert await windows_of(session_factory, tenant) == []

    await put_on_metered_plan(session_factory, tenant)
    health = await metered_api.get(HEALTH)
    assert health.status_code == 200 and "RateLimit-Limit" not in health.headers
    minute, _ = window_of(utcnow())
    async with session_factory.begin() as session:
        session.add(RateWindow(token_key="stale", minute=minute - 10, requests=3))
    # A project's route resolves the caller for the project and for the role: counted once.
    counted = await metered_api.get(tenant.url("/agents"), headers=tenant.headers)
    assert counted.status_code == 200, counted.text
    assert limit_headers(counted)[:2] == (5, 4)
    assert [w.requests for w in await windows_of(session_factory, tenant)] == [1]
    # The token's first request of its minute deleted the minutes before, of every token.
    async with session_factory() as session:
        assert await session.get(RateWindow, ("stale", minute - 10)) is None


async def windows_of(sessions: Sessions, tenant: Tenant) -> list[RateWindow]:
    async with sessions() as session:
        tokens = select(ApiToken.id).where(ApiToken.org_id == tenant.org_id)
        rows = await session.scalars(select(RateWindow).where(RateWindow.token_key.in_(tokens)))
        return list(rows)


async def test_concurrent_counts_lose_nothing_and_old_windows_are_deleted(
    session_factory: Sessions,
):
    minute, _ = window_of(utcnow())

    async def count_one() -> int:
        async with session_factory.begin() as session:
            return await rate_repo.count_request(
                session=session, token_key="concurrent-test", minute=minute - 5
            )

    counts = await asyncio.gather(*(count_one() for _ in range(20)))
    assert sorted(counts) == list(range(1, 21))

    async with session_factory.begin() as session:
        await rate_repo.forget_before(session=session, minute=minute)
    async with session_factory() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(RateWindow)
            .where(RateWindow.token_key == "concurrent-test")
        )
    assert left == 0


async def test_many_requests_at_once_on_a_limited_plan_do_not_starve_the_pool(
    settings: Settings,
    tmp_path: Path,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    session_factory: Sessions,
):
    """The count takes a connection of its own: a request gives back its session's before
    asking for it, so more requests at once than the pool has connections are all answered
    (holding one while waiting for another, they waited out the pool's timeout)."""
    plans = tmp_path / "roomy.yaml"
    plans.write_text("metered:\n  requests_per_minute: 1000\n")
    await put_on_metered_plan(session_factory, tenant)
    roomy = settings.model_copy(update={"plans_file": plans})
    async with api_client(roomy, temporal_env.client) as api, asyncio.timeout(15):
        answers = await asyncio.gather(
            *(api.get(CREDITS, headers=tenant.headers) for _ in range(24))
        )
    assert [a.status_code for a in answers] == [200] * 24
