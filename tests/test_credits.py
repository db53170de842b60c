"""Plans and credits: every tool run is one action, charged once however often its record is
written; a tool run the organisation cannot pay for is refused with 402 and creates nothing;
monthly allowances reset, grants roll over; operators set plans and grant from the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.llm import LlmActivities
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import events as event_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import CreditEntry, CreditTotal, ToolRun
from baton.domain.credits import (
    Currency,
    LlmCharge,
    ModelPrice,
    PlanBook,
    load_plans,
    period_of,
    tool_run_key,
)
from baton.domain.llm import LlmRequest
from baton.domain.tasks import LlmCall
from baton.domain.tool_runs import NewToolRun
from baton.domain.tools import ToolSpec
from baton.errors import InvalidInput
from baton.services.provider_configs import settings_provider_configs
from baton.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.support import Tenant, app_with_worker, assert_error, auth, create_token
from tests.support.database import stored_task
from tests.support.factories import FINAL, finished_run, make_agent, make_tool, start_task, task_in
from tests.test_enrichment import enrichments_url, new_set, wait_for_job

Sessions = async_sessionmaker[AsyncSession]
PLANS = PlanBook()
FAILING_TOOL = {
    "name": "broken",
    "steps": [{"name": "boom", "type": "code", "code": "raise ValueError('no')"}],
}


async def credits(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    response = await api.get("/api/v1/credits", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_plan(sessions: Sessions, tenant: Tenant, plan: str) -> None:
    async with sessions.begin() as session:
        await credit_repo.set_plan(session=session, plans=PLANS, org_id=tenant.org_id, plan=plan)


async def run_tool(
    api: httpx.AsyncClient, tenant: Tenant, tool_id: str, params: dict[str, Any] | None = None
) -> httpx.Response:
    return await api.post(
        tenant.url(f"/tools/{tool_id}/runs"), json={"params": params or {}}, headers=tenant.headers
    )


async def spend_actions(
    session: AsyncSession, tenant: Tenant, actions: int, key: str, now: datetime | None = None
) -> None:
    """`actions` debits of one action each, as that many tool runs would make (at `now`)."""
    for n in range(actions):
        await credit_repo.debit(
            session=session,
            plans=PLANS,
            org_id=tenant.org_id,
            project_id=tenant.project_id,
            currency=Currency.actions,
            micros=1_000_000,
            key=f"{key}:{n}",
            now=now,
        )


async def debits(sessions: Sessions, org_id: int) -> list[CreditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(CreditEntry).where(CreditEntry.org_id == org_id, CreditEntry.kind == "debit")
        )
        return list(rows)


async def test_a_new_organisation_is_on_the_default_plan_with_no_limit(
    api: httpx.AsyncClient, tenant: Tenant
):
    body = await credits(api, tenant)
    assert body["plan"] == "enterprise"
    assert body["actions"] == {"included": None, "used": 0, "granted": 0, "remaining": None}
    start_, end = period_of(datetime.now(UTC))
    assert datetime.fromisoformat(body["period_start"]) == start_
    assert datetime.fromisoformat(body["period_end"]) == end


async def test_every_tool_run_costs_one_action_whether_it_succeeds_or_fails(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "free")
    good = await make_tool(api, tenant)
    made = await api.post(tenant.url("/tools"), json=FAILING_TOOL, headers=tenant.headers)
    assert made.status_code == 201, made.text
    ran = [
        await run_tool(api, tenant, good, {"text": "x"}),
        await run_tool(api, tenant, made.json()["id"]),
    ]
    assert [r.status_code for r in ran] == [201, 201], [r.text for r in ran]
    statuses = [(await finished_run(api, tenant, r.json()["id"]))["status"] for r in ran]
    assert statuses == ["succeeded", "failed"]

    body = await credits(api, tenant)
    assert body["plan"] == "free"
    assert body["actions"] == {"included": 200, "used": 2, "granted": 0, "remaining": 198}
    keys = {entry.idempotency_key for entry in await debits(session_factory, tenant.org_id)}
    assert keys == {tool_run_key(r.json()["id"]) for r in ran}


async def test_an_agents_tool_call_is_a_tool_run_and_costs_an_action(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, session_factory: Sessions
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(
        api, tenant, agent, 'call echo_tool {"text": "a"}\ncall echo_tool {"text": "b"}'
    )
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    async with session_factory() as session:
        runs = await session.scalar(
            select(func.count()).select_from(ToolRun).where(ToolRun.project_id == tenant.project_id)
        )
    assert runs == 2
    assert (await credits(api, tenant))["actions"]["used"] == 2


async def test_a_retried_record_of_a_run_charges_it_once(session_factory: Sessions, tenant: Tenant):
    """The activity that records an agent's tool run may run again after a crash: the run's
    row and its debit are both written once."""
    async with session_factory.begin() as session:
        tool = await tool_repo.create_tool(
            session=session,
            project_id=tenant.project_id,
            spec=ToolSpec.model_validate(
                {"name": "t", "steps": [{"name": "s", "type": "template", "template": "x"}]}
            ),
        )
    new_run = NewToolRun(
        run_id="00000000-0000-4000-8000-000000000001",
        project_id=tenant.project_id,
        tool_id=tool.id,
        tool_version=1,
        params={},
    )
    for _ in range(3):
        async with session_factory.begin() as session:
            await run_repo.ensure_run(session=session, new_run=new_run, plans=PLANS)
    charged = await debits(session_factory, tenant.org_id)
    assert [(e.idempotency_key, e.amount) for e in charged] == [
        (tool_run_key(new_run.run_id), 1_000_000)
    ]


async def test_out_of_actions_a_tool_run_is_refused_with_402_and_nothing_is_created(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "free")
    tool = await make_tool(api, tenant)
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 200, "test")
    refused = await run_tool(api, tenant, tool, {"text": "x"})
    error = assert_error(refused, 402, "out_of_credits")["error"]
    assert "no actions left" in error["message"] and "plan free" in error["message"]
    runs = await api.get(tenant.url("/tool-runs"), headers=tenant.headers)
    assert runs.json()["items"] == []
    assert (await credits(api, tenant))["actions"]["remaining"] == 0

    # A grant pays for the next run; the allowance was spent first.
    async with session_factory.begin() as session:
        await credit_repo.grant(
            session=session,
            org_id=tenant.org_id,
            currency=Currency.actions,
            amount=5,
            key=f"g1:{tenant.org_id}",
        )
    assert (await credits(api, tenant))["actions"]["remaining"] == 5
    accepted = await run_tool(api, tenant, tool, {"text": "x"})
    assert accepted.status_code == 201, accepted.text
    assert (await credits(api, tenant))["actions"] == {
        "included": 200,
        "used": 201,
        "granted": 4,
        "remaining": 4,
    }


async def test_the_allowance_resets_each_month_and_grants_roll_over(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "free")
    async with session_factory.begin() as session:
        await credit_repo.grant(
            session=session, org_id=tenant.org_id, currency=Currency.actions, amount=10, key="g"
        )
        # Last month: the whole allowance and 3 actions of the grant.
        start_, _ = period_of(datetime.now(UTC))
        await spend_actions(session, tenant, 203, "last-month", now=start_ - timedelta(days=1))
    body = await credits(api, tenant)
    assert body["actions"] == {"included": 200, "used": 0, "granted": 7, "remaining": 207}


async def test_vendor_credits_of_a_plan_are_shown_as_numbers(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "pro")
    async with session_factory.begin() as session:
        await credit_repo.grant(
            session=session,
            org_id=tenant.org_id,
            currency=Currency.vendor_credits,
            amount=1.25,
            key="v",
        )
    body = await credits(api, tenant)
    assert body["vendor_credits"] == {
        "included": 20.0,
        "used": 0.0,
        "granted": 1.25,
        "remaining": 21.25,
    }


async def test_each_organisation_sees_only_its_own_credits(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "team")
    async with session_factory.begin() as session:
        await credit_repo.grant(
            session=session, org_id=tenant.org_id, currency=Currency.actions, amount=3, key="t"
        )
    mine, theirs = await credits(api, tenant), await credits(api, other_tenant)
    assert (mine["plan"], mine["actions"]["granted"]) == ("team", 3)
    assert (theirs["plan"], theirs["actions"]["granted"]) == ("enterprise", 0)


async def test_a_user_group_token_cannot_read_credits(api: httpx.AsyncClient, tenant: Tenant):
    created = await api.post(
        "/api/user",
        json={"current_token": "", "name": "Customers", "provided_id": "customers"},
        headers=tenant.headers,
    )
    assert created.status_code == 200, created.text
    token = created.json()["user_group"]["token"]
    refused = await api.get("/api/v1/credits", headers=auth(token))
    assert_error(refused, 403)


async def test_a_viewer_of_the_organisation_reads_its_credits(
    api: httpx.AsyncClient, tenant: Tenant
):
    viewer = await create_token(api, tenant.headers, role="viewer")
    response = await api.get("/api/v1/credits", headers=auth(viewer["token"]))
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == "enterprise"


def test_a_plans_file_replaces_and_adds_plans(tmp_path: Path):
    path = tmp_path / "plans.yaml"
    path.write_text("free:\n  monthly_actions: 50\nstartup:\n  monthly_actions: 1000\n")
    plans = load_plans(path)
    assert plans["free"].monthly_actions == 50
    assert plans["startup"].monthly_actions == 1000
    assert plans["pro"].monthly_actions == 10_000
    path.write_text("free:\n  monthly_actions: -1\n")
    with pytest.raises(InvalidInput, match=r"plans file plans\.yaml"):
        load_plans(path)


def test_a_plans_file_sets_limits_and_refuses_keys_it_does_not_know(tmp_path: Path):
    path = tmp_path / "plans.yaml"
    path.write_text(
        "startup:\n  requests_per_minute: 5\n  max_projects: 2\n  max_upload_bytes: 1000\n"
    )
    startup = load_plans(path)["startup"]
    assert (startup.requests_per_minute, startup.max_projects, startup.max_members) == (5, 2, None)
    assert (startup.agent_seconds_per_message, startup.tool_run_seconds) == (900, 900)
    path.write_text("startup:\n  requests_per_hour: 5\n")
    with pytest.raises(InvalidInput, match="requests_per_hour"):
        load_plans(path)


async def test_credits_show_the_plans_limits_with_sizes_under_the_installations_ceiling(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions, settings: Settings
):
    unlimited = (await credits(api, tenant))["limits"]
    assert unlimited["max_projects"] is None and unlimited["requests_per_minute"] is None
    assert unlimited["max_upload_bytes"] == settings.max_upload_bytes
    assert unlimited["max_rows_per_import"] == settings.max_rows_per_import

    await set_plan(session_factory, tenant, "free")
    free = (await credits(api, tenant))["limits"]
    assert free == {
        "max_projects": 1,
        "max_members": 3,
        "max_concurrent_tasks": 2,
        "requests_per_minute": 60,
        "max_upload_bytes": 10 * 1024 * 1024,
        "max_rows_per_import": 5_000,
        "agent_seconds_per_message": 900,
        "tool_run_seconds": 900,
        "history_retention_days": 30,
    }
    ceiling = PlanBook(upload_ceiling_bytes=1024, rows_per_import_ceiling=10)
    assert (
        ceiling.limits("free").max_upload_bytes,
        ceiling.limits("free").max_rows_per_import,
    ) == (
        1024,
        10,
    )


def baton_cli(
    settings: Settings, *args: str, temporal_address: str = "127.0.0.1:1"
) -> subprocess.CompletedProcess[str]:
    """`baton admin ...` on the test's database; its Temporal is out of reach unless given."""
    env = {
        **os.environ,
        "BATON_DATABASE_URL": settings.resolved_database_url,
        "BATON_DATA_DIR": str(settings.data_dir),
        "BATON_TEMPORAL_ADDRESS": temporal_address,
    }
    return subprocess.run(
        [sys.executable, "-m", "baton", "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_operators_set_a_plan_and_grant_from_the_command_line(
    api: httpx.AsyncClient, tenant: Tenant, settings: Settings
):
    planned = baton_cli(settings, "plan", "--org", str(tenant.org_id), "pro")
    assert planned.returncode == 0, planned.stderr
    assert "tasks paused out of credits resume by themselves within 15 minutes" in (planned.stderr)
    granted = baton_cli(
        settings, "grant", "--org", str(tenant.org_id), "--actions", "7", "--vendor-credits", "0.5"
    )
    assert granted.returncode == 0, granted.stderr
    shown = json.loads(granted.stdout)
    assert (shown["plan"], shown["actions"]["granted"], shown["vendor_credits"]["granted"]) == (
        "pro",
        7,
        0.5,
    )
    body = await credits(api, tenant)
    assert body["actions"]["remaining"] == 10_007

    unknown = baton_cli(settings, "plan", "--org", str(tenant.org_id), "platinum")
    assert unknown.returncode == 1
    assert "unknown plan 'platinum'" in unknown.stderr
    nobody = baton_cli(settings, "grant", "--org", "999999999", "--actions", "1")
    assert nobody.returncode == 1
    assert "organisation 999999999 not found" in nobody.stderr


# Vendor credits: model calls on the installation's key


def on_openai_server(settings: Settings, openai_server: FakeOpenAI, **update: Any) -> Settings:
    """The settings with `update` and the `openai` provider on the local OpenAI server, on
    the installation's key, its host and port let through the egress guard."""
    return settings.model_copy(
        update={
            **update,
            "openai_api_key": "sk-test-installation-key-1",
            "openai_base_url": openai_server.base_url,
            "http_allow_hosts": [f"127.0.0.1:{openai_server.port}"],
        }
    )


@pytest.fixture
async def metered_api(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: Sessions,
    openai_server: FakeOpenAI,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API and a worker whose `openai` provider is the local OpenAI server, on the
    installation's key; a project may also reach it through an integration of its own."""
    openai_server.reset()
    configured = on_openai_server(settings, openai_server)
    async with app_with_worker(configured, temporal_env.client, session_factory) as client:
        yield client


async def answer_once(
    api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI, **agent: Any
) -> dict[str, Any]:
    openai_server.reply_text("Hello", prompt_tokens=1000, completion_tokens=500)
    made = await api.post(
        tenant.url("/agents"),
        json={
            "name": "Priced",
            "model": "openai:gpt-4o-mini",
            "idle_timeout_seconds": 0,
            **agent,
        },
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    task_id = await start_task(api, tenant, made.json()["id"], "hi")
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    return task


async def test_a_model_call_on_the_installations_key_spends_its_price_once(
    metered_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: Sessions,
):
    task = await answer_once(metered_api, tenant, openai_server)
    # gpt-4o-mini: 1,000 input tokens at 0.00015 and 500 output tokens at 0.0006 per 1,000.
    body = await credits(metered_api, tenant)
    assert body["vendor_credits"]["used"] == pytest.approx(0.00045)
    charged = [e for e in await debits(session_factory, tenant.org_id) if e.currency != "actions"]
    assert [(e.idempotency_key, e.amount) for e in charged] == [(f"llm:{task['id']}:1", 450)]


async def test_an_enrichments_llm_step_spends_its_price_once_per_row(
    metered_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: Sessions,
):
    api = metered_api
    rows = 3
    for _ in range(rows):
        openai_server.reply_text("Nice", prompt_tokens=1000, completion_tokens=500)
    made = await api.post(
        tenant.url("/tools"),
        json={
            "name": "describe",
            "params": [{"name": "name"}],
            "steps": [
                {
                    "name": "ask",
                    "type": "llm",
                    "model": "openai:gpt-4o-mini",
                    "prompt": "Describe {{ params.name }}",
                }
            ],
        },
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    set_id, row_ids = await new_set(
        api,
        tenant,
        [{"name": "name"}, {"name": "about"}, {"name": "about_error"}],
        [{"name": f"n{i}"} for i in range(rows)],
    )
    started = await api.post(
        enrichments_url(tenant, set_id),
        json={
            "tool_id": made.json()["id"],
            "input_mapping": {"name": {"column": "name"}},
            "output_mapping": {"about": "@"},
        },
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    job = await wait_for_job(api, tenant, set_id, started.json()["id"])
    assert (job["status"], job["done"]) == ("succeeded", rows)

    charged = [e for e in await debits(session_factory, tenant.org_id) if e.currency != "actions"]
    assert sorted((e.idempotency_key, e.amount) for e in charged) == sorted(
        (f"enrichment:{job['id']}:row:{row_id}:step:0:-1", 450) for row_id in row_ids
    )
    body = await credits(api, tenant)
    assert body["vendor_credits"]["used"] == pytest.approx(rows * 0.00045)


async def test_a_model_call_retried_after_its_answer_was_written_still_counts_its_cost(
    settings: Settings, tenant: Tenant, openai_server: FakeOpenAI, session_factory: Sessions
):
    """The task's budget (`max_credits_per_task`) counts what its calls cost: an attempt
    after a crash that finds the answer written returns what that answer was charged."""
    openai_server.reset()
    openai_server.reply_text("Hello", prompt_tokens=1000, completion_tokens=500)
    configured = settings.model_copy(
        update={
            "openai_api_key": "sk-test-installation-key-1",
            "openai_base_url": openai_server.base_url,
        }
    )
    task_id = await stored_task(session_factory, tenant, agent_name="Priced")
    activities = LlmActivities(
        settings_provider_configs(configured), session_factory=session_factory, plans=PLANS
    )
    call = LlmCall(
        task_id=task_id,
        request=LlmRequest(model="openai:gpt-4o-mini", messages=[]),
        stream_key="llm:run:1",
        project_id=tenant.project_id,
        seq=1,
    )
    env = ActivityEnvironment()

    first = await env.run(activities.chat, call)
    again = await env.run(activities.chat, call)  # the retry of an attempt that crashed late

    assert len(openai_server.requests) == 1  # the model was not asked again
    assert again.content == first.content == "Hello"
    assert first.vendor_micros == again.vendor_micros == 450
    charged = [e for e in await debits(session_factory, tenant.org_id) if e.currency != "actions"]
    assert [(e.idempotency_key, e.amount) for e in charged] == [(f"llm:{task_id}:1", 450)]


async def test_a_model_call_on_the_projects_own_key_spends_no_vendor_credits(
    metered_api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
):
    made = await metered_api.post(
        tenant.url("/integrations"),
        json={
            "name": "ours",
            "kind": "openai",
            "base_url": openai_server.base_url,
            "api_key": "sk-the-projects-own-key",
        },
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    await answer_once(metered_api, tenant, openai_server, integration="ours")
    assert (await credits(metered_api, tenant))["vendor_credits"]["used"] == 0


async def test_without_metering_nothing_is_required_or_charged(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: Sessions,
    tenant: Tenant,
    openai_server: FakeOpenAI,
):
    """BATON_METERING=off: an organisation whose allowance is spent still runs tools and
    priced models, and the ledger gets no debit."""
    await set_plan(session_factory, tenant, "free")
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 200, "spent-before-metering-off")
    openai_server.reset()
    unmetered = on_openai_server(settings, openai_server, metering=False)
    async with app_with_worker(unmetered, temporal_env.client, session_factory) as api:
        tool = await make_tool(api, tenant)
        ran = await run_tool(api, tenant, tool, {"text": "x"})
        assert ran.status_code == 201, ran.text
        assert (await finished_run(api, tenant, ran.json()["id"]))["status"] == "succeeded"
        await answer_once(api, tenant, openai_server)
    keys = {entry.idempotency_key for entry in await debits(session_factory, tenant.org_id)}
    assert keys == {f"spent-before-metering-off:{n}" for n in range(200)}


async def spend_vendor_credits(sessions: Sessions, tenant: Tenant, amount: float) -> None:
    async with sessions.begin() as session:
        await credit_repo.debit(
            session=session,
            plans=PLANS,
            org_id=tenant.org_id,
            project_id=tenant.project_id,
            currency=Currency.vendor_credits,
            micros=round(amount * 1_000_000),
            key="spent-elsewhere",
        )


async def listed_as_paused(temporal_env: WorkflowEnvironment, workflow_id: str) -> None:
    """Until Temporal's visibility lists the workflow as paused (it may lag a moment)."""
    query = f"WorkflowId = '{workflow_id}' AND BatonStatus = 'out-of-credits'"
    async with asyncio.timeout(20):
        while not [w async for w in temporal_env.client.list_workflows(query)]:
            await asyncio.sleep(0.2)


async def test_a_task_out_of_vendor_credits_pauses_and_resumes_when_credits_arrive(
    metered_api: httpx.AsyncClient,
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: Sessions,
    temporal_env: WorkflowEnvironment,
    settings: Settings,
):
    await set_plan(session_factory, tenant, "free")
    await spend_vendor_credits(session_factory, tenant, 2)  # the free plan's whole month
    openai_server.reply_text("Hello", prompt_tokens=1000, completion_tokens=500)
    made = await metered_api.post(
        tenant.url("/agents"),
        json={"name": "Priced", "model": "openai:gpt-4o-mini", "idle_timeout_seconds": 0},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    task_id = await start_task(metered_api, tenant, made.json()["id"], "hi")

    paused = await task_in(metered_api, tenant, task_id, {"out-of-credits", *FINAL})
    assert paused["status"] == "out-of-credits"
    assert openai_server.requests == []  # the call that could not be paid was not made
    async with session_factory() as session:
        events = await event_repo.list_events(session=session, task_id=task_id)
    said = [e.data for e in events if e.type == "task.status"]
    assert said[-1]["status"] == "out-of-credits"
    assert "no vendor credits left" in said[-1]["details"]
    handle = temporal_env.client.get_workflow_handle(paused["workflow_id"])
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    # The grant tells the paused task, once Temporal lists it as paused.
    await listed_as_paused(temporal_env, handle.id)
    granted = baton_cli(
        settings,
        "grant",
        "--org",
        str(tenant.org_id),
        "--vendor-credits",
        "1",
        temporal_address=temporal_env.client.service_client.config.target_host,
    )
    assert granted.returncode == 0, granted.stderr
    assert "1 paused task(s) told to resume" in granted.stderr
    task = await task_in(metered_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]
    assert task["messages"][-1]["content"] == "Hello"
    assert len(openai_server.requests) == 1
    body = await credits(metered_api, tenant)
    assert body["vendor_credits"]["granted"] == pytest.approx(1 - 0.00045)


async def test_a_task_out_of_actions_pauses_before_calling_tools_and_its_owner_can_cancel_it(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "free")
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 200, "spent")
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}])
    task_id = await start_task(api, tenant, agent, 'call echo_tool {"text": "a"}')

    paused = await task_in(api, tenant, task_id, {"out-of-credits", *FINAL})
    assert paused["status"] == "out-of-credits"
    assert [m["role"] for m in paused["messages"]] == ["user"]  # no model call, no tool run
    cancelled = await api.post(tenant.url(f"/tasks/{task_id}/cancel"), headers=tenant.headers)
    assert cancelled.status_code == 202, cancelled.text
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "cancelled"
    assert (await credits(api, tenant))["actions"]["used"] == 200


async def test_a_task_with_nothing_to_pay_for_runs_on_an_empty_balance(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, session_factory: Sessions
):
    """An offline model with no tools costs neither actions nor vendor credits."""
    await set_plan(session_factory, tenant, "free")
    async with session_factory.begin() as session:
        await spend_actions(session, tenant, 200, "spent")
    agent = await make_agent(api, tenant, tools=[], model="scripted:echo")
    task_id = await start_task(api, tenant, agent, "hello")
    task = await task_in(api, tenant, task_id, FINAL | {"out-of-credits", "idle"})
    assert task["status"] in {"completed", "idle"}, task["error"]


async def test_a_task_past_its_vendor_credit_budget_asks_before_its_next_model_call(
    metered_api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
):
    openai_server.reply_text("Hello", prompt_tokens=1000, completion_tokens=500)
    made = await metered_api.post(
        tenant.url("/agents"),
        json={
            "name": "Budgeted",
            "model": "openai:gpt-4o-mini",
            "idle_timeout_seconds": 60,
            "max_credits_per_task": 0.0004,
        },
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    task_id = await start_task(metered_api, tenant, made.json()["id"], "hi")
    await task_in(metered_api, tenant, task_id, {"idle"} | FINAL)
    sent = await metered_api.post(
        tenant.url(f"/tasks/{task_id}/messages"), json={"message": "more"}, headers=tenant.headers
    )
    assert sent.status_code == 202, sent.text

    waiting = await task_in(metered_api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval", waiting["error"]
    [pending] = waiting["pending_approvals"]
    # The first call cost 0.00045 (1,000 input and 500 output tokens of gpt-4o-mini).
    assert pending["arguments"] == {"vendor_credits_spent": 0.00045, "max_credits": 0.0004}
    assert len(openai_server.requests) == 1
    cancelled = await metered_api.post(
        tenant.url(f"/tasks/{task_id}/cancel"), headers=tenant.headers
    )
    assert cancelled.status_code == 202


async def ledger_sums(session: AsyncSession, org_id: int) -> dict[tuple[str, str, str], int]:
    """What credit_totals must hold, summed from the ledger itself: per currency, scope
    (a month, or the whole ledger) and project (or the whole organisation)."""
    sums: dict[tuple[str, str, str], int] = {}
    entries = await session.scalars(select(CreditEntry).where(CreditEntry.org_id == org_id))
    for entry in entries:
        month = period_of(entry.created_at)[0].isoformat()
        scopes = [(month, ""), ("all", "")]
        if entry.project_id is not None:
            scopes.append((month, entry.project_id))
        for period, project in scopes:
            for field, value in (
                ("used", entry.amount if entry.kind == "debit" else 0),
                ("paid_by_grants", entry.from_grant),
                ("granted", entry.amount if entry.kind == "grant" else 0),
            ):
                key = (entry.currency, f"{period}/{project}", field)
                sums[key] = sums.get(key, 0) + value
    return sums


async def kept_totals(session: AsyncSession, org_id: int) -> dict[tuple[str, str, str], int]:
    totals: dict[tuple[str, str, str], int] = {}
    for row in await session.scalars(select(CreditTotal).where(CreditTotal.org_id == org_id)):
        period = "all" if row.period_start == credit_repo.ALL_TIME else row.period_start
        scope = f"{period if period == 'all' else period.isoformat()}/{row.project_id}"
        for field in ("used", "paid_by_grants", "granted"):
            totals[(row.currency, scope, field)] = getattr(row, field)
    return totals


async def test_the_running_totals_equal_the_ledger_after_grants_debits_retries_and_a_new_month(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    await set_plan(session_factory, tenant, "free")
    other_project = str(uuid.uuid4())
    last_month = period_of(datetime.now(UTC))[0] - timedelta(days=3)
    # Idempotency keys are unique across the ledger: this test's own, beside other tests'.
    k = f"totals-{uuid.uuid4()}"
    async with session_factory.begin() as session:
        for key in (f"{k}:g1", f"{k}:g1", f"{k}:g2"):  # the retried grant counts once
            await credit_repo.grant(
                session=session, org_id=tenant.org_id, currency=Currency.actions, amount=5, key=key
            )
        await credit_repo.grant(
            session=session,
            org_id=tenant.org_id,
            currency=Currency.vendor_credits,
            amount=0.5,
            key=f"{k}:v1",
        )
        # Last month: past the allowance, so grants paid part; then this month, twice over
        # (every debit retried with its key), in two projects and both currencies.
        await spend_actions(session, tenant, 203, f"{k}:old", now=last_month)
        for _ in range(2):
            await spend_actions(session, tenant, 7, f"{k}:new")
            for n, project in enumerate((tenant.project_id, other_project, None)):
                await credit_repo.debit(
                    session=session,
                    plans=PLANS,
                    org_id=tenant.org_id,
                    project_id=project,
                    currency=Currency.vendor_credits,
                    micros=123_456,
                    key=f"{k}:vc:{n}",
                )
    async with session_factory() as session:
        sums = await ledger_sums(session, tenant.org_id)
        assert sums[("actions", "all/", "paid_by_grants")] == 3_000_000  # grants did pay
        assert await kept_totals(session, tenant.org_id) == sums
    body = await credits(api, tenant)
    assert body["actions"] == {"included": 200, "used": 7, "granted": 7, "remaining": 200}


async def test_a_batch_of_model_calls_partly_charged_before_pays_for_the_new_ones_in_order(
    tenant: Tenant, session_factory: Sessions
):
    """A tool run's `llm` charges go in together with its last write; one of them may have
    been charged already (a retry). Only the new ones take what is left of the allowance."""
    await set_plan(session_factory, tenant, "free")  # 2 vendor credits a month
    plans = PlanBook(prices={"openai:priced": ModelPrice(input=1.0, output=0.0)})
    k = f"batch-{uuid.uuid4()}"

    def costing(key: str, credits: float) -> LlmCharge:  # 1,000 input tokens: one credit
        tokens = round(credits * 1000)
        return LlmCharge(key=key, model="openai:priced", input_tokens=tokens, output_tokens=0)

    async with session_factory.begin() as session:
        await credit_repo.debit(
            session=session,
            plans=plans,
            org_id=tenant.org_id,
            project_id=tenant.project_id,
            currency=Currency.vendor_credits,
            micros=1_500_000,
            key=f"{k}:spent",
        )
        await credit_repo.grant(
            session=session,
            org_id=tenant.org_id,
            currency=Currency.vendor_credits,
            amount=5,
            key=f"{k}:grant",
        )
        earlier = costing(f"{k}:a", 0.4)
        await credit_repo.charge_llm_calls(
            session=session, plans=plans, project_id=tenant.project_id, calls=[earlier]
        )
    async with session_factory.begin() as session:
        charged = await credit_repo.charge_llm_calls(
            session=session,
            plans=plans,
            project_id=tenant.project_id,
            calls=[earlier, costing(f"{k}:b", 0.3), costing(f"{k}:c", 0.2)],
        )

    assert charged == 2
    entries = {e.idempotency_key: e for e in await debits(session_factory, tenant.org_id)}
    # 0.1 of the allowance was left after a: b takes it, and the grant pays the rest.
    assert {key: (entries[key].amount, entries[key].from_grant) for key in entries if k in key} == {
        f"{k}:spent": (1_500_000, 0),
        f"{k}:a": (400_000, 0),
        f"{k}:b": (300_000, 200_000),
        f"{k}:c": (200_000, 200_000),
    }
    async with session_factory() as session:
        assert await kept_totals(session, tenant.org_id) == await ledger_sums(
            session, tenant.org_id
        )
