"""The one way a test waits for something that happens later: ask again until it holds."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 30,
    every: float = 0.1,
    what: str = "the condition",
) -> T:
    """The first truthy answer of `probe` (a function or a coroutine function), asked every
    `every` seconds; fails after `timeout` seconds naming `what` and the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {answer!r}")
        await asyncio.sleep(every)
