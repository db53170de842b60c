"""The usage report: a project's tokens, vendor credits, actions, runs and failures, per day,
agent, tool, model or user group, as JSON and as CSV, computed from what real tasks and
tool runs recorded; readable by the project's members, never by a user group's token."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker

from baton.db.tables import Task
from tests.fakes.openai_server import FakeOpenAI
from tests.support import Tenant, assert_error, auth, create_token, items_of
from tests.support.factories import FINAL, finished_run, make_agent, make_tool, start_task, task_in
from tests.test_credits import FAILING_TOOL, answer_once, metered_api, run_tool

__all__ = ["metered_api"]  # a fixture of test_credits, used here by name

# gpt-4o-mini: 1,000 input tokens at 0.00015 and 500 output tokens at 0.0006 per 1,000.
PRICE = 0.00045


async def usage(api: httpx.AsyncClient, tenant: Tenant, **params: str) -> dict[str, Any]:
    response = await api.get(tenant.url("/usage"), params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def row(group: str | None, **counts: float) -> dict[str, Any]:
    zero = {
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "vendor_credits": 0,
        "actions": 0,
        "runs": 0,
        "failures": 0,
    }
    return {"group": group, **zero, **counts}


@pytest.fixture
async def worked(
    metered_api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
) -> dict[str, str]:
    """One priced agent task, one tool run that succeeds and one that fails."""
    task = await answer_once(metered_api, tenant, openai_server)
    good = await make_tool(metered_api, tenant)
    made = await metered_api.post(tenant.url("/tools"), json=FAILING_TOOL, headers=tenant.headers)
    assert made.status_code == 201, made.text
    bad = made.json()["id"]
    for tool_id in (good, bad):
        started = await run_tool(
            metered_api, tenant, tool_id, {"text": "x"} if tool_id == good else {}
        )
        assert started.status_code == 201, started.text
        await finished_run(metered_api, tenant, started.json()["id"])
    return {"task": task["id"], "agent": task["agent_id"], "good": good, "bad": bad}


async def test_each_grouping_adds_up_to_what_ran(
    metered_api: httpx.AsyncClient, tenant: Tenant, worked: dict[str, str]
):
    api = metered_api
    by_model = await usage(api, tenant, group_by="model")
    assert by_model["rows"] == [
        row(
            "openai:gpt-4o-mini", input_tokens=1000, output_tokens=500, vendor_credits=PRICE, runs=1
        ),
        row(None, actions=2, runs=2, failures=1),
    ]
    assert by_model["totals"] == row(
        None,
        input_tokens=1000,
        output_tokens=500,
        vendor_credits=PRICE,
        actions=2,
        runs=3,
        failures=1,
    )
    by_tool = await usage(api, tenant, group_by="tool")
    assert sorted(by_tool["rows"], key=lambda r: str(r["group"])) == sorted(
        [
            row(worked["good"], actions=1, runs=1),
            row(worked["bad"], actions=1, runs=1, failures=1),
            row(None, input_tokens=1000, output_tokens=500, vendor_credits=PRICE, runs=1),
        ],
        key=lambda r: str(r["group"]),
    )
    by_agent = await usage(api, tenant, group_by="agent")
    assert by_agent["rows"][0] == row(
        worked["agent"], input_tokens=1000, output_tokens=500, vendor_credits=PRICE, runs=1
    )
    today = datetime.now(UTC).date().isoformat()
    by_day = await usage(api, tenant)
    assert by_day["group_by"] == "day"
    assert by_day["rows"] == [{**by_model["totals"], "group": today}]
    by_group = await usage(api, tenant, group_by="user_group")
    assert by_group["rows"] == [by_model["totals"]]


async def test_a_window_counts_what_started_or_was_charged_in_it(
    metered_api: httpx.AsyncClient,
    tenant: Tenant,
    worked: dict[str, str],
    session_factory: async_sessionmaker[AsyncSession],
):
    now = datetime.now(UTC)
    before = await usage(metered_api, tenant, to=(now - timedelta(hours=1)).isoformat())
    assert before["rows"] == [] and before["totals"] == row(None)
    # The task started two days ago: its tokens and its run belong to that day, the vendor
    # credits it was charged today still to its model.
    async with session_factory.begin() as session:
        await session.execute(
            update(Task).where(Task.id == worked["task"]).values(created_at=now - timedelta(days=2))
        )
    recent = await usage(
        metered_api, tenant, group_by="model", **{"from": (now - timedelta(days=1)).isoformat()}
    )
    assert recent["rows"] == [
        row("openai:gpt-4o-mini", vendor_credits=PRICE),
        row(None, actions=2, runs=2, failures=1),
    ]


async def test_the_csv_has_the_same_rows_under_a_header(
    metered_api: httpx.AsyncClient, tenant: Tenant, worked: dict[str, str]
):
    response = await metered_api.get(
        tenant.url("/usage.csv"), params={"group_by": "model"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines == [
        [
            "model",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "vendor_credits",
            "actions",
            "runs",
            "failures",
        ],
        ["openai:gpt-4o-mini", "1000", "0", "500", str(PRICE), "0", "1", "0"],
        ["", "0", "0", "0", "0.0", "2", "2", "1"],
    ]


async def test_members_read_it_user_groups_and_strangers_do_not(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    viewer = await create_token(api, tenant.headers, role="viewer", project_id=tenant.project_id)
    for path in ("/usage", "/usage.csv"):
        seen = await api.get(tenant.url(path), headers=auth(viewer["token"]))
        assert seen.status_code == 200, seen.text
        assert_error(await api.get(tenant.url(path), headers=other_tenant.headers), 404)
        assert_error(await api.get(tenant.url(path)), 401)
    group = await api.post(
        "/api/user",
        json={"current_token": "", "name": "G", "provided_id": "g"},
        headers=tenant.headers,
    )
    as_group = auth(group.json()["user_group"]["token"])
    assert_error(await api.get(tenant.url("/usage"), headers=as_group), 403)
    assert_error(await api.get(tenant.url("/usage.csv"), headers=as_group), 403)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"from": "last tuesday"}, "from"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"to": "2026-01-01T00:00:00"}, "to"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ],
)
async def test_bad_parameters_are_a_422_naming_the_field(
    api: httpx.AsyncClient, tenant: Tenant, params: dict[str, str], field: str
):
    for path in ("/usage", "/usage.csv"):
        response = await api.get(tenant.url(path), params=params, headers=tenant.headers)
        body = assert_error(response, 422)
        assert [d["field"] for d in body["error"]["details"]] in ([field], [f"query.{field}"])


async def test_tasks_are_grouped_by_the_user_group_they_ran_for(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await make_agent(api, tenant, tools=[], model="scripted:echo", idle_timeout_seconds=0)
    await api.post(
        "/api/user", json={"name": "Acme", "provided_id": "acme"}, headers=tenant.headers
    )
    [group] = await items_of(api, "/api/v1/user-groups", tenant.headers)
    for user_group in ("acme", "acme", None):
        extra = {"user_group": user_group} if user_group else {}
        task_id = await start_task(api, tenant, agent, "hello", **extra)
        await task_in(api, tenant, task_id, FINAL)
    rows = (await usage(api, tenant, group_by="user_group"))["rows"]
    assert [(r["group"], r["runs"], r["failures"]) for r in rows] == [
        (group["id"], 2, 0),
        (None, 1, 0),
    ]
    assert rows[0]["output_tokens"] == 2 * rows[1]["output_tokens"] > 0
