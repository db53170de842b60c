"""The installation's plans, as its settings give them, and waking the tasks that wait for
credits or for capacity."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from baton.domain.capacity import CAPACITY_FREED_SIGNAL
from baton.domain.credits import CREDITS_ARRIVED_SIGNAL, PlanBook, load_plans, load_prices
from baton.domain.tasks import TaskStatus
from baton.errors import InvalidInput
from baton.search_attributes import BATON_PROJECT, BATON_STATUS
from baton.settings import Settings


def plan_book(settings: Settings) -> PlanBook:
    """The built-in plans with those of BATON_PLANS_FILE, BATON_DEFAULT_PLAN (which must be
    one of them), the model prices with those of BATON_MODEL_PRICES_FILE, the
    installation's size ceilings (BATON_MAX_UPLOAD_BYTES, BATON_MAX_ROWS_PER_IMPORT), and
    whether credits are metered at all (BATON_METERING)."""
    book = PlanBook(
        plans=load_plans(settings.plans_file),
        default_plan=settings.default_plan,
        prices=load_prices(settings.model_prices_file),
        upload_ceiling_bytes=settings.max_upload_bytes,
        rows_per_import_ceiling=settings.max_rows_per_import,
        metering=settings.metering,
    )
    if settings.default_plan not in book.plans:
        raise InvalidInput(
            f"BATON_DEFAULT_PLAN={settings.default_plan!r} is not a plan; the plans are "
            f"{', '.join(book.plans)}"
        )
    return book


async def wake_paused_tasks(client: Client, project_ids: Sequence[str]) -> int:
    """Tells every task of these projects paused `out-of-credits` that credits arrived, so
    each tries its model call again now rather than at its next check; how many were told.
    A task that finished meanwhile is skipped."""
    return await _signal_tasks(
        client, project_ids, TaskStatus.out_of_credits, CREDITS_ARRIVED_SIGNAL
    )


async def wake_queued_tasks(client: Client, project_ids: Sequence[str]) -> int:
    """Tells every queued task of these projects to ask for a slot now (their plan changed,
    its `max_concurrent_tasks` with it) rather than at its next re-check; how many were
    told. A task not yet waiting asks as soon as it would wait."""
    return await _signal_tasks(client, project_ids, TaskStatus.queued, CAPACITY_FREED_SIGNAL)


async def _signal_tasks(
    client: Client, project_ids: Sequence[str], status: TaskStatus, signal: str
) -> int:
    if not project_ids:
        return 0
    projects = ", ".join(f"'{_quoted(p)}'" for p in project_ids)
    query = (
        f"WorkflowType = 'AgentTaskWorkflow' AND ExecutionStatus = 'Running' AND "
        f"{BATON_STATUS.name} = '{status.value}' AND "
        f"{BATON_PROJECT.name} IN ({projects})"
    )
    told = 0
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            await handle.signal(signal)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            continue
        told += 1
    return told


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
