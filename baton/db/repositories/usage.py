"""A project's usage between two times, from what Baton already records: the tasks (their
token totals), the tool runs, and the credits ledger's debits (vendor credits of model calls,
actions of tool runs). Each is counted in the window by its own time: a task and a tool run
when it started, a debit when it was charged; a debit is grouped as what it paid for (the
task of a model call, the tool run of an action), looked up by its idempotency key."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import AgentVersion, CreditEntry, Task, ToolRun
from baton.domain.credits import MICROS, Currency, EntryKind
from baton.domain.tasks import TaskStatus
from baton.domain.tools import ToolRunStatus
from baton.domain.usage import GroupBy, UsageReport, UsageRow

FAILED_TASKS = {TaskStatus.failed.value, TaskStatus.timed_out.value}
LLM_KEY_PREFIX = "llm:"
TOOL_RUN_KEY_PREFIX = "tool-run:"


@dataclass(frozen=True)
class _Task:
    id: str
    created_at: datetime
    agent_id: str | None
    user_group_id: str | None
    model: str | None
    failed: bool
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class _Run:
    id: str
    created_at: datetime
    tool_id: str
    failed: bool


@dataclass
class _Sums:
    """One group's counts; vendor credits in micro-units until the end, so sums are exact."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    vendor_micros: int = 0
    action_micros: int = 0
    runs: int = 0
    failures: int = 0

    def row(self, group: str | None) -> UsageRow:
        return UsageRow(
            group=group,
            input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens,
            output_tokens=self.output_tokens,
            vendor_credits=self.vendor_micros / MICROS,
            actions=self.action_micros // MICROS,
            runs=self.runs,
            failures=self.failures,
        )


@dataclass
class _Report:
    group_by: GroupBy
    groups: dict[str | None, _Sums] = field(default_factory=dict)

    def of(self, group: str | None) -> _Sums:
        return self.groups.setdefault(group, _Sums())

    def rows(self) -> list[UsageRow]:
        # Named groups in order, then the one without a name.
        keys = sorted(self.groups, key=lambda key: (key is None, key or ""))
        return [self.groups[key].row(key) for key in keys]

    def totals(self) -> UsageRow:
        total = _Sums()
        for sums in self.groups.values():
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(sums, name))
        return total.row(None)


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _task_group(task: _Task, by: GroupBy, when: datetime | None = None) -> str | None:
    match by:
        case GroupBy.day:
            return _day(when or task.created_at)
        case GroupBy.agent:
            return task.agent_id
        case GroupBy.model:
            return task.model
        case GroupBy.user_group:
            return task.user_group_id
        case GroupBy.tool:
            return None


def _run_group(run: _Run, by: GroupBy, when: datetime | None = None) -> str | None:
    if by is GroupBy.day:
        return _day(when or run.created_at)
    return run.tool_id if by is GroupBy.tool else None


async def usage_report(
    *, session: AsyncSession, project_id: str, start: datetime, end: datetime, group_by: GroupBy
) -> UsageReport:
    report = _Report(group_by)
    tasks = await _tasks(session, project_id, (Task.created_at >= start, Task.created_at < end))
    runs = await _runs(session, project_id, (ToolRun.created_at >= start, ToolRun.created_at < end))
    for task in tasks.values():
        sums = report.of(_task_group(task, group_by))
        sums.input_tokens += task.input_tokens
        sums.cached_input_tokens += task.cached_input_tokens
        sums.output_tokens += task.output_tokens
        sums.runs += 1
        sums.failures += task.failed
    for run in runs.values():
        sums = report.of(_run_group(run, group_by))
        sums.runs += 1
        sums.failures += run.failed
    await _add_debits(session, report, project_id, start, end, tasks, runs)
    return UsageReport(
        project_id=project_id,
        from_=start,
        to=end,
        group_by=group_by,
        rows=report.rows(),
        totals=report.totals(),
    )


async def _add_debits(
    session: AsyncSession,
    report: _Report,
    project_id: str,
    start: datetime,
    end: datetime,
    tasks: dict[str, _Task],
    runs: dict[str, _Run],
) -> None:
    """Each debit of the window in the group of what it paid for; that may have started
    before the window (a long task), so it is read too."""
    debits = (
        await session.execute(
            select(
                CreditEntry.idempotency_key,
                CreditEntry.currency,
                CreditEntry.amount,
                CreditEntry.created_at,
            ).where(
                CreditEntry.project_id == project_id,
                CreditEntry.kind == EntryKind.debit.value,
                CreditEntry.created_at >= start,
                CreditEntry.created_at < end,
            )
        )
    ).all()
    task_ids = {_task_of(key) for key, *_ in debits} - {None} - tasks.keys()
    run_ids = {_run_of(key) for key, *_ in debits} - {None} - runs.keys()
    if task_ids:
        tasks = tasks | await _tasks(session, project_id, (Task.id.in_(task_ids),))
    if run_ids:
        runs = runs | await _runs(session, project_id, (ToolRun.id.in_(run_ids),))
    for key, currency, amount, created_at in debits:
        sums = report.of(_debit_group(report.group_by, key, created_at, tasks, runs))
        if currency == Currency.vendor_credits.value:
            sums.vendor_micros += amount
        elif currency == Currency.actions.value:
            sums.action_micros += amount


def _debit_group(
    by: GroupBy, key: str, when: datetime, tasks: dict[str, _Task], runs: dict[str, _Run]
) -> str | None:
    task = tasks.get(_task_of(key) or "")
    if task is not None:
        return _task_group(task, by, when)
    run = runs.get(_run_of(key) or "")
    if run is not None:
        return _run_group(run, by, when)
    return _day(when) if by is GroupBy.day else None


def _task_of(key: str) -> str | None:
    """`llm:<task id>:<seq>` (baton.domain.credits.llm_call_key) names a task."""
    if not key.startswith(LLM_KEY_PREFIX):
        return None
    return key[len(LLM_KEY_PREFIX) :].rpartition(":")[0] or None


def _run_of(key: str) -> str | None:
    """`tool-run:<run id>` (baton.domain.credits.tool_run_key), and
    `tool-run:<run id>:step:...` (tool_run_step_key, an `llm` step's) name a tool run."""
    if not key.startswith(TOOL_RUN_KEY_PREFIX):
        return None
    return key[len(TOOL_RUN_KEY_PREFIX) :].partition(":")[0] or None


async def _tasks(
    session: AsyncSession, project_id: str, where: Iterable[ColumnElement[bool]]
) -> dict[str, _Task]:
    rows = (
        await session.execute(
            select(
                Task.id,
                Task.created_at,
                Task.agent_id,
                Task.agent_version,
                Task.user_group_id,
                Task.status,
                Task.input_tokens,
                Task.cached_input_tokens,
                Task.output_tokens,
            ).where(Task.project_id == project_id, *where)
        )
    ).all()
    models = await _models(session, {(r.agent_id, r.agent_version) for r in rows if r.agent_id})
    return {
        row.id: _Task(
            id=row.id,
            created_at=row.created_at,
            agent_id=row.agent_id,
            user_group_id=row.user_group_id,
            model=models.get((row.agent_id, row.agent_version)),
            failed=row.status in FAILED_TASKS,
            input_tokens=row.input_tokens,
            cached_input_tokens=row.cached_input_tokens,
            output_tokens=row.output_tokens,
        )
        for row in rows
    }


async def _models(
    session: AsyncSession, versions: set[tuple[str | None, int | None]]
) -> dict[tuple[str | None, int | None], str]:
    """The model of each agent version a task ran (its spec's `model`)."""
    agent_ids = {agent_id for agent_id, _ in versions}
    if not agent_ids:
        return {}
    rows = await session.execute(
        select(AgentVersion.agent_id, AgentVersion.version, AgentVersion.spec).where(
            AgentVersion.agent_id.in_(agent_ids)
        )
    )
    return {
        (agent_id, version): str(spec.get("model", ""))
        for agent_id, version, spec in rows
        if (agent_id, version) in versions
    }


async def _runs(
    session: AsyncSession, project_id: str, where: Iterable[ColumnElement[bool]]
) -> dict[str, _Run]:
    rows = (
        await session.execute(
            select(ToolRun.id, ToolRun.created_at, ToolRun.tool_id, ToolRun.status).where(
                ToolRun.project_id == project_id,
                *where,
            )
        )
    ).all()
    return {
        row.id: _Run(
            id=row.id,
            created_at=row.created_at,
            tool_id=row.tool_id,
            failed=row.status == ToolRunStatus.failed.value,
        )
        for row in rows
    }
