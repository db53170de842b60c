"""An agent's spending budget per task: once a task has spent `max_actions_per_task` (tool
runs) or `max_credits_per_task` (vendor credits), it asks a person before its next model
call, as a pending approval; approved, it may spend as much again, rejected, it ends. Through
the API and a real worker, on the offline scripted models."""

from __future__ import annotations

import httpx
import pytest
from temporalio.worker import Worker

from baton.domain.agents import AgentSpec
from baton.domain.tasks import TaskSpend
from tests.support import Tenant
from tests.support.factories import FINAL, make_agent, make_tool, start_task, task_in

TWO_CALLS = 'call echo_tool {"text": "a"}\ncall echo_tool {"text": "b"}'


async def budgeted_task(api: httpx.AsyncClient, tenant: Tenant) -> tuple[str, dict]:
    """A task whose agent may run one tool before asking, after a turn that ran two."""
    tool = await make_tool(api, tenant)
    agent = await make_agent(api, tenant, tools=[{"tool_id": tool}], max_actions_per_task=1)
    task_id = await start_task(api, tenant, agent, TWO_CALLS)
    waiting = await task_in(api, tenant, task_id, {"waiting-approval"} | FINAL)
    assert waiting["status"] == "waiting-approval", waiting["error"]
    return task_id, waiting


async def test_a_task_past_its_budget_asks_before_going_on_and_an_approval_lets_it(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    task_id, waiting = await budgeted_task(api, tenant)
    [pending] = waiting["pending_approvals"]
    assert pending == {
        "call_id": "budget-1",
        "tool": "budget",
        "arguments": {"actions_spent": 2, "max_actions": 1},
        "question": "budget reached: go on?",
    }
    # Both tool runs ran; the model was not called again.
    assert [m["role"] for m in waiting["messages"]] == ["user", "assistant", "tool", "tool"]

    approved = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/budget-1"),
        json={"approve": True},
        headers=tenant.headers,
    )
    assert approved.status_code == 200, approved.text
    task = await task_in(api, tenant, task_id, FINAL | {"idle"})
    assert task["status"] in {"completed", "idle"}, task["error"]
    assert task["messages"][-1]["role"] == "assistant"
    assert task["pending_approvals"] == []


async def test_a_rejected_budget_approval_ends_the_task_saying_why(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    task_id, _ = await budgeted_task(api, tenant)
    rejected = await api.post(
        tenant.url(f"/tasks/{task_id}/approvals/budget-1"),
        json={"approve": False, "reason": "too dear"},
        headers=tenant.headers,
    )
    assert rejected.status_code == 200, rejected.text
    task = await task_in(api, tenant, task_id, FINAL)
    assert task["status"] == "failed"
    assert task["error"] == (
        "the task reached its budget (2 of 1 actions) and was not let go on: too dear"
    )


async def test_a_budget_is_refused_when_it_is_not_positive(api: httpx.AsyncClient, tenant: Tenant):
    for field, value in (("max_credits_per_task", 0), ("max_actions_per_task", 0)):
        made = await api.post(
            tenant.url("/agents"), json={"name": "A", field: value}, headers=tenant.headers
        )
        assert made.status_code == 422, made.text
        assert field in made.text


@pytest.mark.parametrize(
    ("spend", "reached"),
    [
        (TaskSpend(vendor_micros=499_999), None),
        (TaskSpend(vendor_micros=500_000), {"vendor_credits_spent": 0.5, "max_credits": 0.5}),
        # Each approval allows as much again.
        (TaskSpend(vendor_micros=500_000, budget_raises=1), None),
        (
            TaskSpend(vendor_micros=1_000_000, budget_raises=1),
            {"vendor_credits_spent": 1.0, "max_credits": 1.0},
        ),
        (TaskSpend(actions=3), {"actions_spent": 3, "max_actions": 3}),
    ],
)
def test_the_budget_counts_vendor_credits_and_actions(spend: TaskSpend, reached: dict | None):
    agent = AgentSpec(name="A", max_credits_per_task=0.5, max_actions_per_task=3)
    assert spend.over_budget(agent) == reached
