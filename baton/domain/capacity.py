"""The concurrency quota: an organisation whose plan sets `max_concurrent_tasks` runs at
most that many agent tasks at once; the others wait in `queued` ("waiting for capacity") and
start first come, first served (by the time the task was created) as slots free up.

A task holds its slot from the moment it is admitted until it ends (completed, failed,
cancelled, timed out), idle and waiting-approval included: `concurrent` means tasks that are
open, not only those calling a model right now. Admission lives in the database, under the
organisation row's lock, so any number of API replicas and workers agree on it."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel

# What a waiting task's status says (its event's `details`, the Temporal UI's current
# details, GET task's `details`).
WAITING_FOR_CAPACITY = "waiting for capacity"
# The signal a waiting task gets when it was given a slot, and how long it waits before it
# asks by itself (the safety net should a signal be lost, or the plan change): first
# CAPACITY_RECHECK, then twice as long each time up to CAPACITY_RECHECK_MAX, so a task that
# waits for hours adds a few history events an hour, not dozens.
CAPACITY_FREED_SIGNAL = "capacity_freed"
CAPACITY_RECHECK = timedelta(minutes=2)
CAPACITY_RECHECK_MAX = timedelta(minutes=16)


class Capacity(StrEnum):
    """`tasks.capacity`: where a task stands in its organisation's quota. NULL: no quota
    applied when it began (no limit, or a task working for another task)."""

    waiting = "waiting"
    holding = "holding"
    released = "released"


class AdmitTask(BaseModel):
    task_id: str


class Admission(BaseModel):
    admitted: bool = True
