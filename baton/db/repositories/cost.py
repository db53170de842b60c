"""What a task or a tool run cost, read back from the credits ledger by the idempotency keys
its charges were written under (baton.domain.credits): `llm:<task id>:<seq>` for a model
call, `tool-run:<run id>` for a run's action and `tool-run:<run id>:step:...` for what its
`llm` steps spent. A task's calls come from its `usage` events, its runs from its
`tool.run.started` events; a task's tree (its node and delegated tasks, by
`parent_task_id`) is read with it. Two queries however large the tree."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import CreditEntry, Task, TaskEvent, ToolRun
from baton.domain.cost import ModelCallCost, TaskCost, ToolRunCharge, ToolRunCost
from baton.domain.credits import (
    MICROS,
    Currency,
    EntryKind,
    llm_call_key,
    tool_run_key,
)
from baton.domain.events import EventType

USAGE_KEY_PREFIX = "usage:"


async def tool_run_cost(*, session: AsyncSession, run_id: str) -> ToolRunCost:
    charged = await _debits(session, exact=[], runs=[run_id])
    actions, vendor = _run_charges(charged, run_id)
    return ToolRunCost(
        actions=_actions(actions),
        vendor_credits=_credits(vendor),
    )


async def task_cost(*, session: AsyncSession, task_id: str) -> TaskCost:
    calls, runs = await _calls_and_runs(session, task_id)
    charged = await _debits(
        session,
        exact=[llm_call_key(call.task_id, call.seq) for call in calls],
        runs=[run.run_id for run in runs],
    )
    vendor_total = 0
    for call in calls:
        micros = charged[llm_call_key(call.task_id, call.seq)][Currency.vendor_credits]
        call.vendor_credits = _credits(micros)
        vendor_total += micros
    actions_total = 0
    for run in runs:
        actions, vendor = _run_charges(charged, run.run_id)
        run.actions = _actions(actions)
        run.vendor_credits = _credits(vendor)
        actions_total += actions
        vendor_total += vendor
    return TaskCost(
        actions=_actions(actions_total),
        vendor_credits=_credits(vendor_total),
        model_calls=calls,
        tool_runs=runs,
    )


async def _calls_and_runs(
    session: AsyncSession, task_id: str
) -> tuple[list[ModelCallCost], list[ToolRunCharge]]:
    """The model calls (`usage` events) and the kept tool runs (`tool.run.started` events
    with a run row: a knowledge search has none, and costs nothing) of the task's tree."""
    tree = select(Task.id).where(Task.id == task_id).cte("task_tree", recursive=True)
    tree = tree.union_all(select(Task.id).where(Task.parent_task_id == tree.c.id))
    rows = await session.execute(
        select(TaskEvent.task_id, TaskEvent.type, TaskEvent.key, TaskEvent.data, ToolRun.tool_id)
        .outerjoin(ToolRun, ToolRun.id == TaskEvent.data["run_id"].as_string())
        .where(
            TaskEvent.task_id.in_(select(tree.c.id)),
            TaskEvent.type.in_([EventType.usage.value, EventType.tool_run_started.value]),
        )
        .order_by(TaskEvent.id)
    )
    calls: list[ModelCallCost] = []
    runs: dict[str, ToolRunCharge] = {}
    # A root task's log also holds copies of its tree's events (keyed `<task id>:...`): the
    # usage key's prefix leaves those out, and a run is counted once by its id.
    for event_task, event_type, key, data, tool_id in rows:
        if event_type == EventType.usage.value and key and key.startswith(USAGE_KEY_PREFIX):
            calls.append(_call(event_task, int(key[len(USAGE_KEY_PREFIX) :]), data))
        elif event_type == EventType.tool_run_started.value and tool_id is not None:
            run_id = data["run_id"]
            runs.setdefault(
                run_id,
                ToolRunCharge(run_id=run_id, tool_id=tool_id, actions=0, vendor_credits=0),
            )
    return calls, list(runs.values())


def _call(task_id: str, seq: int, usage: dict[str, object]) -> ModelCallCost:
    def tokens(name: str) -> int:
        value = usage.get(name, 0)
        return value if isinstance(value, int) else 0

    model = usage.get("model")
    return ModelCallCost(
        task_id=task_id,
        seq=seq,
        model=model if isinstance(model, str) else None,
        input_tokens=tokens("input_tokens"),
        cached_input_tokens=tokens("cached_input_tokens"),
        output_tokens=tokens("output_tokens"),
        vendor_credits=0,
    )


Charges = dict[str, dict[Currency, int]]


def _actions(micros: int) -> int:
    return micros // MICROS


def _credits(micros: int) -> float:
    return micros / MICROS


async def _debits(session: AsyncSession, *, exact: list[str], runs: list[str]) -> Charges:
    """The debits under the `exact` keys and under each run's key and its steps' keys, in
    micro-units by key and currency."""
    charged: Charges = defaultdict(lambda: defaultdict(int))
    matches: list[ColumnElement[bool]] = []
    keys = [*exact, *(tool_run_key(run_id) for run_id in runs)]
    if keys:
        matches.append(CreditEntry.idempotency_key.in_(keys))
    matches.extend(CreditEntry.idempotency_key.like(f"{tool_run_key(r)}:%") for r in runs)
    if not matches:
        return charged
    rows = await session.execute(
        select(CreditEntry.idempotency_key, CreditEntry.currency, CreditEntry.amount).where(
            CreditEntry.kind == EntryKind.debit.value, or_(*matches)
        )
    )
    for key, currency, amount in rows:
        charged[key][Currency(currency)] += amount
    return charged


def _run_charges(charged: Charges, run_id: str) -> tuple[int, int]:
    """A run's actions and vendor credits, in micro-units: its own key and its steps'."""
    own = tool_run_key(run_id)
    keys: Iterable[str] = (k for k in charged if k == own or k.startswith(f"{own}:"))
    actions = vendor = 0
    for key in keys:
        actions += charged[key][Currency.actions]
        vendor += charged[key][Currency.vendor_credits]
    return actions, vendor
