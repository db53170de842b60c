"""A task's events, numbered 1, 2, 3, ... per task with no gaps, whoever appends them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import Task, TaskEvent, utcnow
from baton.domain.events import EventDraft, EventType
from baton.domain.tasks import PendingApproval
from baton.errors import NotFound

# Appends on PostgreSQL notify this channel with the task id as payload, when they commit.
NOTIFY_CHANNEL = "baton_task_events"


async def append_events(
    *, session: AsyncSession, task_id: str, events: list[EventDraft]
) -> list[int]:
    """Appends `events` after the task's last event and returns each one's `seq`, in order.
    A draft whose `key` the task already has is not written again and answers its existing
    `seq`, so a retried append changes nothing. The caller commits.

    A task that works for another (a workforce's node, a delegation) has its events copied
    into its root task's log too (the task at the top of its `parent_task_id` chain), each
    copy with `data["task_id"]` and `data["node"]` of the task it comes from, and keyed by
    that task's id, so a retried append copies nothing twice."""
    if not events:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    parent = await _take_turn(session, task_id, postgres=postgres)
    seqs = await _append(session, task_id, events, postgres=postgres)
    if parent is not None:
        root, node = await _root_of(session, task_id, parent)
        await _take_turn(session, root, postgres=postgres)
        copies = [
            draft.model_copy(
                update={
                    "data": {**draft.data, "task_id": task_id, "node": node},
                    "key": None if draft.key is None else f"{task_id}:{draft.key}"[:200],
                }
            )
            for draft in events
        ]
        await _append(session, root, copies, postgres=postgres)
    return seqs


# The root task of a task with a parent, and the task's node: the chain never changes, so
# it is looked up once per task and process. Bounded: the oldest entries go first.
_ROOTS: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
_ROOTS_KEPT = 10_000


async def _root_of(session: AsyncSession, task_id: str, parent: str) -> tuple[str, str | None]:
    known = _ROOTS.get(task_id)
    if known is not None:
        return known
    node = await session.scalar(select(Task.node).where(Task.id == task_id))
    root, seen = parent, {task_id}
    while root not in seen:
        seen.add(root)
        above = await session.scalar(select(Task.parent_task_id).where(Task.id == root))
        if above is None:
            break
        root = above
    _ROOTS[task_id] = (root, node)
    if len(_ROOTS) > _ROOTS_KEPT:
        _ROOTS.popitem(last=False)
    return root, node


async def _append(
    session: AsyncSession, task_id: str, events: list[EventDraft], *, postgres: bool
) -> list[int]:

    keys = [draft.key for draft in events if draft.key is not None]
    known: dict[str, int] = {}
    if keys:
        rows = await session.execute(
            select(TaskEvent.key, TaskEvent.seq).where(
                TaskEvent.task_id == task_id, TaskEvent.key.in_(keys)
            )
        )
        known = {key: seq for key, seq in rows if key is not None}
    last = await session.scalar(select(func.max(TaskEvent.seq)).where(TaskEvent.task_id == task_id))
    seq = last or 0

    seqs: list[int] = []
    new_rows: list[dict[str, object]] = []
    now = utcnow()
    for draft in events:
        if draft.key is not None and draft.key in known:
            seqs.append(known[draft.key])
            continue
        seq += 1
        if draft.key is not None:
            known[draft.key] = seq
        seqs.append(seq)
        new_rows.append(
            {
                "task_id": task_id,
                "seq": seq,
                "type": draft.type.value,
                "data": draft.data,
                "key": draft.key,
                "created_at": now,
            }
        )
    if new_rows:
        await session.execute(insert(TaskEvent), new_rows)
        if postgres:
            # Delivered at commit, and not at all on rollback: listeners never wake early.
            await session.execute(select(func.pg_notify(NOTIFY_CHANNEL, task_id)))
    return seqs


async def _take_turn(session: AsyncSession, task_id: str, *, postgres: bool) -> str | None:
    """Makes the task's appenders take turns until this transaction ends, so each one reads
    the last `seq` after the previous one committed; the task's parent, if it has one.
    Raises NotFound without a task row."""
    if postgres:
        # NO KEY UPDATE: it does not wait for transactions that merely insert rows
        # referencing the task (messages, events) and hold a KEY SHARE lock on it.
        locked = (
            await session.execute(
                select(Task.id, Task.parent_task_id)
                .where(Task.id == task_id)
                .with_for_update(key_share=True)
            )
        ).one_or_none()
    else:
        # SQLite has one writer at a time, but its driver begins a transaction only at the
        # first write: writing first takes the write lock before the last `seq` is read.
        locked = (
            await session.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(status=Task.status)
                .returning(Task.id, Task.parent_task_id)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
    if locked is None:
        raise NotFound(f"task {task_id} not found")
    return locked[1]


async def list_events(
    *, session: AsyncSession, task_id: str, after_seq: int = 0, limit: int = 500
) -> list[TaskEvent]:
    query = (
        select(TaskEvent)
        .where(TaskEvent.task_id == task_id, TaskEvent.seq > after_seq)
        .order_by(TaskEvent.seq)
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


async def last_seq(*, session: AsyncSession, task_id: str) -> int:
    """The seq of the task's latest event; 0 before its first."""
    query = select(func.max(TaskEvent.seq)).where(TaskEvent.task_id == task_id)
    return (await session.execute(query)).scalar_one() or 0


async def open_approvals(
    *, session: AsyncSession, task_ids: Collection[str]
) -> dict[str, list[PendingApproval]]:
    """What each task waits on, read from its own events (an inbox of many tasks asks no
    workflow): the approvals asked for and not decided since, in the order asked. Copies
    of other tasks' events (`data["task_id"]`) are not the task's own and are left out."""
    rows = await session.scalars(
        select(TaskEvent)
        .where(
            TaskEvent.task_id.in_(list(task_ids)),
            TaskEvent.type.in_(
                [EventType.tool_approval_requested.value, EventType.tool_approval_decided.value]
            ),
        )
        .order_by(TaskEvent.task_id, TaskEvent.seq)
    )
    waiting: dict[str, dict[str, PendingApproval]] = {task_id: {} for task_id in task_ids}
    for row in rows:
        call_id = row.data.get("call_id")
        if "task_id" in row.data or not isinstance(call_id, str):
            continue
        if row.type == EventType.tool_approval_requested.value:
            waiting[row.task_id][call_id] = PendingApproval.model_validate(row.data)
        else:
            waiting[row.task_id].pop(call_id, None)
    return {task_id: list(calls.values()) for task_id, calls in waiting.items()}
