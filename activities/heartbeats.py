"""Heartbeats while an activity awaits slow work. A worker that dies stops heartbeating, so
Temporal retries its activity elsewhere within the heartbeat timeout; a cancelled activity
learns of it at its next heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")
# Often enough that a cancel, which arrives with a heartbeat's answer (the worker sends one
# at most every second), stops the work within about a second.
HEARTBEAT_EVERY_S = 0.5


async def with_heartbeats(work: Awaitable[T], *details: object) -> T:
    """Awaits `work`, heartbeating every `HEARTBEAT_EVERY_S` meanwhile; with `details`, the
    progress a retry resumes from, which a heartbeat without them would erase."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_S)
            if done:
                return task.result()
            activity.heartbeat(*details)
    finally:
        if not task.done():
            task.cancel()
