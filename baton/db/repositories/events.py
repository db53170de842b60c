"""A task's events, numbered 1, 2, 3, ... per task with no gaps, whoever appends them."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import Task, TaskEvent, utcnow
from baton.domain.events import EventDraft
from baton.errors import NotFound

# Appends on PostgreSQL notify this channel with the task id as payload, when they commit.
NOTIFY_CHANNEL = "baton_task_events"


async def append_events(
    *, session: AsyncSession, task_id: str, events: list[EventDraft]
) -> list[int]:
    """Appends `events` after the task's last event and returns each one's `seq`, in order.
    A draft whose `key` the task already has is not written again and answers its existing
    `seq`, so a retried append changes nothing. The caller commits."""
    if not events:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    await _take_turn(session, task_id, postgres=postgres)

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


async def _take_turn(session: AsyncSession, task_id: str, *, postgres: bool) -> None:
    """Makes the task's appenders take turns until this transaction ends, so each one reads
    the last `seq` after the previous one committed. Raises NotFound without a task row."""
    if postgres:
        # NO KEY UPDATE: it does not wait for transactions that merely insert rows
        # referencing the task (messages, events) and hold a KEY SHARE lock on it.
        locked = await session.scalar(
            select(Task.id).where(Task.id == task_id).with_for_update(key_share=True)
        )
    else:
        # SQLite has one writer at a time, but its driver begins a transaction only at the
        # first write: writing first takes the write lock before the last `seq` is read.
        locked = await session.scalar(
            update(Task)
            .where(Task.id == task_id)
            .values(status=Task.status)
            .returning(Task.id)
            .execution_options(synchronize_session=False)
        )
    if locked is None:
        raise NotFound(f"task {task_id} not found")


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
