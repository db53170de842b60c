"""The API process dies (SIGKILL) while a client follows a task's event stream: the task
goes on without it, and the client, reconnecting with `Last-Event-ID` to the restarted API,
gets every later event once, with no gap."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.faults.conftest import FaultStack
from tests.local_http import LocalHttp
from tests.processes import wait_until
from tests.support import Tenant
from tests.test_task_events import sse_events

# Heavy: a stack of processes each; under xdist they share one worker, one at a time.
# Killing and restarting processes, on timers: under xdist, while no other test runs.
pytestmark = [pytest.mark.xdist_group("faults"), pytest.mark.alone]

STREAM = {"Accept": "text/event-stream"}


async def read_events(
    client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None
) -> list[dict[str, str]]:
    """A task's SSE events after `last_event_id`, to the end of the stream."""
    headers = STREAM if last_event_id is None else {**STREAM, "Last-Event-ID": last_event_id}
    async with asyncio.timeout(60), client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        return [event async for event in sse_events(response)]


async def follow_until_cut(
    client: httpx.AsyncClient, url: str, events: list[dict[str, str]]
) -> None:
    """Collects a live stream's events until its connection breaks."""
    try:
        async with client.stream("GET", url, headers=STREAM) as response:
            async for event in sse_events(response):
                events.append(event)
    except httpx.TransportError:
        return
    raise AssertionError("the stream ended before the API was killed")


async def test_a_stream_cut_by_an_api_crash_resumes_from_last_event_id_without_gap_or_repeat(
    stack: FaultStack, tenant: Tenant, local_http: LocalHttp
):
    agent_id = await stack.effect_agent(tenant, local_http, seconds=3)
    stack.start_worker()
    task_id = await stack.start_task(tenant, agent_id, "call effect\ncall effect")
    others = [await stack.start_task(tenant, agent_id, "call effect") for _ in range(2)]
    url = tenant.url(f"/tasks/{task_id}/events")
    before: list[dict[str, str]] = []
    following = asyncio.create_task(follow_until_cut(stack.client, url, before))
    # On SQLite the stream polls: under load its first events may trail the tool calls.
    await wait_until(
        lambda: local_http.in_flight >= 2 and bool(before),
        60,
        "the task's tool calls in flight and its first events streamed",
    )

    stack.api.kill()
    async with asyncio.timeout(10):
        await following
    await asyncio.sleep(1)
    await stack.api.start()
    after = await read_events(stack.client, url, last_event_id=before[-1]["id"])

    seen = [int(e["id"]) for e in before + after]
    assert seen == list(range(1, len(seen) + 1)), seen
    everything = await read_events(stack.client, url)
    assert [e["id"] for e in everything] == [e["id"] for e in before + after]
    assert [e["data"] for e in everything] == [e["data"] for e in before + after]
    assert after[-1]["event"] == "task.status" and '"completed"' in after[-1]["data"]
    # The task, and those nobody watched, carried on while the API was away.
    finished = await stack.wait_final(tenant, [task_id, *others], timeout=60)
    assert [t["status"] for t in finished] == ["completed"] * 3, stack.logs()
