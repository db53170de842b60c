"""What a task and a tool run cost, on their reads: the ledger's actions and vendor credits,
each model call with its tokens, each tool run the task's agent started; a task's cost takes
in the tasks it started (its tree, by `parent_task_id`)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import credits as credit_repo
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.tables import CreditEntry
from baton.domain.credits import Currency, ModelPrice, PlanBook, llm_call_key, tool_run_key
from baton.domain.events import EventDraft, EventType
from baton.domain.tool_runs import NewToolRun
from tests.fakes.openai_server import FakeOpenAI, chunk, tool_calls, tool_delta, usage_chunk
from tests.support import Tenant
from tests.support.factories import FINAL, finished_run, make_agent, make_tool, start_task, task_in
from tests.test_credits import credits as read_credits
from tests.test_credits import metered_api  # noqa: F401 (a fixture)

Sessions = async_sessionmaker[AsyncSession]
PLANS = PlanBook()


async def read(api: httpx.AsyncClient, tenant: Tenant, path: str) -> dict[str, Any]:
    response = await api.get(tenant.url(path), headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_task_shows_its_model_calls_and_tool_runs_and_the_run_its_action(
    metered_api: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    openai_server: FakeOpenAI,
):
    tool = await make_tool(metered_api, tenant)
    openai_server.reset()
    openai_server.reply_chunks(
        tool_calls(tool_delta(index=0, id="c1", name="echo_tool", arguments='{"text": "a"}')),
        chunk({}, finish_reason="tool_calls"),
        usage_chunk(2000, 100),
    )
    openai_server.reply_text("Done", prompt_tokens=1000, completion_tokens=500)
    agent = await make_agent(
        metered_api,
        tenant,
        tools=[{"tool_id": tool}],
        model="openai:gpt-4o-mini",
        idle_timeout_seconds=0,
    )
    task_id = await start_task(metered_api, tenant, agent, "hi")
    task = await task_in(metered_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]

    cost = (await read(metered_api, tenant, f"/tasks/{task_id}"))["cost"]
    # gpt-4o-mini: 0.00015 per 1,000 input tokens, 0.0006 per 1,000 output tokens.
    first, second = 2000 * 0.00015 / 1000 + 100 * 0.0006 / 1000, 0.00045
    assert [
        (c["seq"], c["model"], c["input_tokens"], c["output_tokens"]) for c in cost["model_calls"]
    ] == [(1, "openai:gpt-4o-mini", 2000, 100), (3, "openai:gpt-4o-mini", 1000, 500)]
    assert [c["vendor_credits"] for c in cost["model_calls"]] == [
        pytest.approx(first),
        pytest.approx(second),
    ]
    [run] = cost["tool_runs"]
    assert (run["tool_id"], run["actions"], run["vendor_credits"]) == (tool, 1, 0)
    assert cost["actions"] == 1
    assert cost["vendor_credits"] == pytest.approx(first + second)

    run_cost = (await read(metered_api, tenant, f"/tool-runs/{run['run_id']}"))["cost"]
    assert run_cost == {"actions": 1, "vendor_credits": 0}
    # Lists leave cost out.
    listed = await metered_api.get(tenant.url("/tool-runs"), headers=tenant.headers)
    assert listed.json()["items"][0]["cost"] is None


async def child_task(session: AsyncSession, tenant: Tenant, agent: str, parent: str | None) -> str:
    task_id = str(uuid.uuid4())
    await task_repo.ensure_task(
        session=session,
        task_id=task_id,
        workflow_id=f"cost-test-{task_id}",
        project_id=tenant.project_id,
        agent_id=agent,
        first_message="hi",
        user_group_id=None,
        parent_task_id=parent,
        node=None if parent is None else "worker",
    )
    return task_id


async def model_call(session: AsyncSession, tenant: Tenant, task_id: str, micros: int) -> None:
    """A priced answer at seq 1, as the LLM activity records it: its usage event and debit."""
    usage = {"input_tokens": 10, "output_tokens": 5, "model": "openai:gpt-4o-mini"}
    await event_repo.append_events(
        session=session,
        task_id=task_id,
        events=[EventDraft(type=EventType.usage, data=usage, key="usage:1")],
    )
    await credit_repo.debit(
        session=session,
        plans=PLANS,
        org_id=tenant.org_id,
        project_id=tenant.project_id,
        currency=Currency.vendor_credits,
        micros=micros,
        key=llm_call_key(task_id, 1),
    )


async def tool_run(session: AsyncSession, tenant: Tenant, task_id: str, tool: str) -> str:
    """A run the task's agent started, as its workflow records it (charged one action)."""
    run_id = str(uuid.uuid4())
    new_run = NewToolRun(run_id=run_id, project_id=tenant.project_id, tool_id=tool)
    await run_repo.ensure_run(session=session, new_run=new_run, plans=PLANS)
    started = {"call_id": "c1", "tool": "echo_tool", "run_id": run_id}
    await event_repo.append_events(
        session=session,
        task_id=task_id,
        events=[EventDraft(type=EventType.tool_run_started, data=started, key="started:c1")],
    )
    return run_id


async def test_a_tasks_cost_takes_in_the_tasks_it_started_and_theirs(
    api: httpx.AsyncClient, tenant: Tenant, session_factory: Sessions
):
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[])
    async with session_factory.begin() as session:
        root = await child_task(session, tenant, agent, None)
        middle = await child_task(session, tenant, agent, root)
        leaf = await child_task(session, tenant, agent, middle)
        await model_call(session, tenant, root, 1_000)
        await model_call(session, tenant, middle, 20_000)
        await model_call(session, tenant, leaf, 300_000)
        run = await tool_run(session, tenant, leaf, tool)

    root_cost = (await read(api, tenant, f"/tasks/{root}"))["cost"]
    # The root's log holds copies of its tree's events: each call and run counts once.
    assert [(c["task_id"], c["vendor_credits"]) for c in root_cost["model_calls"]] == [
        (root, 0.001),
        (middle, 0.02),
        (leaf, 0.3),
    ]
    assert root_cost["tool_runs"] == [
        {"run_id": run, "tool_id": tool, "actions": 1, "vendor_credits": 0}
    ]
    assert (root_cost["actions"], root_cost["vendor_credits"]) == (1, pytest.approx(0.321))

    middle_cost = (await read(api, tenant, f"/tasks/{middle}"))["cost"]
    assert [c["task_id"] for c in middle_cost["model_calls"]] == [middle, leaf]
    assert (middle_cost["actions"], middle_cost["vendor_credits"]) == (1, pytest.approx(0.32))


async def test_a_task_with_nothing_charged_costs_nothing(
    api: httpx.AsyncClient, tenant: Tenant, worker: Any
):
    agent = await make_agent(api, tenant, tools=[])
    task_id = await start_task(api, tenant, agent, "hello")
    task = await task_in(api, tenant, task_id, FINAL)
    # A scripted model has no price: its call is listed, at 0.
    assert task["cost"]["actions"] == 0 and task["cost"]["vendor_credits"] == 0
    assert [c["vendor_credits"] for c in task["cost"]["model_calls"]] == [0]
    assert task["cost"]["tool_runs"] == []


async def test_cached_input_tokens_cost_the_cached_price_and_show_in_the_usage_report(
    metered_api: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: Sessions,
):
    openai_server.reset()
    openai_server.reply_text("Hi", prompt_tokens=1000, completion_tokens=500, cached_tokens=800)
    agent = await make_agent(
        metered_api, tenant, tools=[], model="openai:gpt-4o-mini", idle_timeout_seconds=0
    )
    task_id = await start_task(metered_api, tenant, agent, "hi")
    task = await task_in(metered_api, tenant, task_id, FINAL)
    assert task["status"] == "completed", task["error"]

    # gpt-4o-mini per 1,000 tokens: input 0.00015, cached input 0.000075, output 0.0006.
    price = (200 * 0.00015 + 800 * 0.000075 + 500 * 0.0006) / 1000
    [call] = task["cost"]["model_calls"]
    assert (call["input_tokens"], call["cached_input_tokens"]) == (1000, 800)
    assert call["vendor_credits"] == pytest.approx(price)
    assert task["cost"]["vendor_credits"] == pytest.approx(price)

    report = await read(metered_api, tenant, "/usage?group_by=model")
    assert report["totals"]["input_tokens"] == 1000
    assert report["totals"]["cached_input_tokens"] == 800
    assert report["totals"]["vendor_credits"] == pytest.approx(price)


def test_a_model_without_a_cached_price_prices_cached_tokens_as_input():
    plain = ModelPrice(input=0.001, output=0.002)
    assert plain.cost_micros(1000, 0, cached_tokens=400) == plain.cost_micros(1000, 0) == 1000
    discounted = ModelPrice(input=0.001, cached_input=0.0001, output=0.002)
    assert discounted.cost_micros(1000, 0, cached_tokens=400) == 600 + 40


# `llm` steps of tools


def summarise_tool(**step: Any) -> dict[str, Any]:
    return {
        "name": "summarise",
        "params": [{"name": "text", "type": "text"}],
        "steps": [
            {
                "name": "ask",
                "type": "llm",
                "model": "openai:gpt-4o-mini",
                "prompt": "Summarise: {{ params.text }}",
                **step,
            }
        ],
    }


async def summarise_run(api: httpx.AsyncClient, tenant: Tenant, **step: Any) -> dict[str, Any]:
    """A run of the summarise tool with `step`'s fields, once it has ended."""
    made = await api.post(tenant.url("/tools"), json=summarise_tool(**step), headers=tenant.headers)
    assert made.status_code == 201, made.text
    started = await api.post(
        tenant.url(f"/tools/{made.json()['id']}/runs"),
        json={"params": {"text": "a long text"}},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    run = await finished_run(api, tenant, started.json()["id"])
    return await read(api, tenant, f"/tool-runs/{run['id']}")


async def run_summarise(api: httpx.AsyncClient, tenant: Tenant, **step: Any) -> dict[str, Any]:
    run = await summarise_run(api, tenant, **step)
    assert run["status"] == "succeeded", run["error"]
    return run


async def test_an_llm_step_on_the_installations_key_spends_vendor_credits_once(
    metered_api: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    openai_server: FakeOpenAI,
    session_factory: Sessions,
):
    openai_server.reset()
    # The first answer is not the JSON the step asks for: the step's activity is retried,
    # and calls the model again, but the step execution is charged once.
    openai_server.reply_text("not json", prompt_tokens=1000, completion_tokens=500)
    openai_server.reply_text('{"summary": "short"}', prompt_tokens=1000, completion_tokens=500)
    run = await run_summarise(metered_api, tenant, json_schema={"type": "object"}, retries=1)
    assert len(openai_server.requests) == 2
    assert run["output"] == {"summary": "short"}
    assert run["cost"] == {"actions": 1, "vendor_credits": pytest.approx(0.00045)}

    async with session_factory() as session:
        keys = (
            await session.scalars(
                select(CreditEntry.idempotency_key).where(
                    CreditEntry.org_id == tenant.org_id, CreditEntry.currency == "vendor_credits"
                )
            )
        ).all()
    assert keys == [f"{tool_run_key(run['id'])}:step:0:-1"]
    credits = await read_credits(metered_api, tenant)
    assert credits["vendor_credits"]["used"] == pytest.approx(0.00045)


async def test_an_llm_step_that_fails_on_its_answer_still_spends_its_price(
    metered_api: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    openai_server: FakeOpenAI,
):
    # The call was made, so it is paid for, though the run fails on the answer (not the JSON
    # the step asks for) and its last write has no answer to charge.
    openai_server.reset()
    openai_server.reply_text("not json", prompt_tokens=1000, completion_tokens=500)
    run = await summarise_run(metered_api, tenant, json_schema={"type": "object"}, retries=0)
    assert run["status"] == "failed"
    assert run["cost"] == {"actions": 1, "vendor_credits": pytest.approx(0.00045)}


async def test_an_llm_step_on_the_projects_own_key_spends_none(
    metered_api: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    openai_server: FakeOpenAI,
):
    openai_server.reset()
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
    openai_server.reply_text("short", prompt_tokens=1000, completion_tokens=500)
    run = await run_summarise(metered_api, tenant, integration="ours")
    assert run["output"] == "short"
    assert run["cost"] == {"actions": 1, "vendor_credits": 0}
