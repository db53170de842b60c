"""Templates the API renders while it answers a request (a webhook's, an agent's welcome
message): their input comes from whoever calls, so they run in a worker thread, never on the
event loop, and on a budget that also has a deadline. A few threads at most: many heavy
renders at once wait for each other instead of starving the requests that render nothing."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from baton import templating

T = TypeVar("T")

RENDER_THREADS = 4
# One limiter per event loop: its waiters are bound to the loop they wait on.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def api_budget(scope: str = "the template") -> templating.Budget:
    return templating.Budget(seconds=templating.API_RENDER_SECONDS, scope=scope)


async def off_loop(render: Callable[[], T]) -> T:
    """Runs `render` (which renders on an `api_budget()`) in one of the render threads."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(RENDER_THREADS)
    return await anyio.to_thread.run_sync(render, limiter=limiter)
