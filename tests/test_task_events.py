"""A task's events: numbered 1..n without gaps or repeats, and streamed as Server-Sent Events
that resume after `Last-Event-ID`, follow the task live and end when it is final."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.events import EventActivities, EventWriter
from api import event_hub
from baton.db.engine import is_sqlite
from baton.db.repositories import accounts
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.domain.accounts import UserGroupEnvironment
from baton.domain.credits import PlanBook
from baton.domain.events import AppendEvents, EventDraft, EventType
from baton.domain.tasks import TaskStatus
from tests.support import Tenant, assert_error, auth
from tests.support.database import stored_task

Sessions = async_sessionmaker[AsyncSession]
# The live streams below are bounded by each test's own `asyncio.timeout`, not by httpx's 5 s
# read timeout: on a loaded CI machine the first response once took longer than that.


async def new_task(sessions: Sessions, tenant: Tenant, *, user_group_id: str | None = None) -> str:
    task_id = await stored_task(
        sessions, tenant, agent_name="Streamer", user_group_id=user_group_id
    )
    async with sessions.begin() as session:
        await task_repo.set_status(session=session, task_id=task_id, status=TaskStatus.running)
    return task_id


async def append(sessions: Sessions, task_id: str, *drafts: EventDraft) -> list[int]:
    async with sessions.begin() as session:
        return await event_repo.append_events(session=session, task_id=task_id, events=[*drafts])


def delta(text: str, key: str | None = None) -> EventDraft:
    return EventDraft(type=EventType.message_delta, data={"text": text}, key=key)


async def finish(sessions: Sessions, task_id: str) -> None:
    """As the task's activities do: the final status and its event in one transaction."""
    async with sessions.begin() as session:
        await task_repo.set_status(session=session, task_id=task_id, status=TaskStatus.completed)
        await event_repo.append_events(
            session=session,
            task_id=task_id,
            events=[EventDraft(type=EventType.task_status, data={"status": "completed"})],
        )


async def stored(sessions: Sessions, task_id: str) -> list[tuple[int, str | None, Any]]:
    async with sessions() as session:
        rows = await event_repo.list_events(session=session, task_id=task_id)
    return [(row.seq, row.key, row.data) for row in rows]


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """The events of an SSE response as they arrive; comments (pings) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def read_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> list[dict[str, str]]:
    async with asyncio.timeout(10), client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        return [event async for event in sse_events(response)]


# Appending


async def test_events_are_numbered_from_one_in_the_order_they_are_appended(
    session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    assert await append(session_factory, task_id, delta("a"), delta("b"), delta("c")) == [1, 2, 3]
    assert await append(session_factory, task_id, delta("d"), delta("e")) == [4, 5]
    other_task = await new_task(session_factory, tenant)
    assert await append(session_factory, other_task, delta("x")) == [1]

    async with session_factory() as session:
        later = await event_repo.list_events(session=session, task_id=task_id, after_seq=3)
    assert [(e.seq, e.type, e.data) for e in later] == [
        (4, "message.delta", {"text": "d"}),
        (5, "message.delta", {"text": "e"}),
    ]


async def test_a_retried_append_writes_nothing_new(session_factory: Sessions, tenant: Tenant):
    task_id = await new_task(session_factory, tenant)
    assert await append(session_factory, task_id, delta("a", "k1"), delta("b", "k2")) == [1, 2]
    assert await append(session_factory, task_id, delta("a", "k1"), delta("b", "k2")) == [1, 2]
    # Partly new: only the new key is written; events without a key are always new.
    assert await append(session_factory, task_id, delta("b", "k2"), delta("c", "k3")) == [2, 3]
    assert await append(session_factory, task_id, delta("d"), delta("d")) == [4, 5]
    assert [(seq, key) for seq, key, _ in await stored(session_factory, task_id)] == [
        (1, "k1"),
        (2, "k2"),
        (3, "k3"),
        (4, None),
        (5, None),
    ]


async def test_concurrent_appenders_get_unique_seqs_without_gaps(
    session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    batches = await asyncio.gather(
        *(append(session_factory, task_id, delta(f"{n}a"), delta(f"{n}b")) for n in range(10))
    )
    assert sorted(seq for batch in batches for seq in batch) == list(range(1, 21))
    assert all(second == first + 1 for first, second in batches)  # a batch stays together

    # The same key from ten appenders at once is written once.
    same = await asyncio.gather(
        *(append(session_factory, task_id, delta("x", "once")) for _ in range(10))
    )
    assert same == [[21]] * 10
    assert len(await stored(session_factory, task_id)) == 21


async def test_the_append_activity_is_idempotent_and_rejects_an_unknown_task(
    session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    activities = EventActivities(session_factory, PlanBook())
    batch = AppendEvents(
        task_id=task_id,
        events=[
            EventDraft(type=EventType.tool_run_started, data={"tool": "t"}, key="run:1:start"),
            EventDraft(type=EventType.tool_run_completed, data={"tool": "t"}, key="run:1:end"),
        ],
    )
    env = ActivityEnvironment()
    await env.run(activities.append, batch)
    await env.run(activities.append, batch)  # a retry
    assert [key for _, key, _ in await stored(session_factory, task_id)] == [
        "run:1:start",
        "run:1:end",
    ]

    with pytest.raises(ApplicationError) as raised:
        await env.run(activities.append, AppendEvents(task_id="nope", events=batch.events))
    assert raised.value.non_retryable


async def test_an_event_writer_writes_in_batches_and_a_retry_adds_only_what_is_new(
    session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    writer = EventWriter(session_factory, task_id, key_prefix="run:1")
    for n in range(25):
        await writer.emit(EventType.tool_run_started, {"n": n})
    assert len(await stored(session_factory, task_id)) >= 20  # a full batch went at once
    await writer.flush()
    assert len(await stored(session_factory, task_id)) == 25

    retried = EventWriter(session_factory, task_id, key_prefix="run:1")
    for n in range(30):
        await retried.emit(EventType.tool_run_started, {"n": n})
    await retried.flush()
    events = await stored(session_factory, task_id)
    assert [(seq, key, data["n"]) for seq, key, data in events] == [
        (n + 1, f"run:1:{n + 1}", n) for n in range(30)
    ]


async def test_an_event_writer_writes_a_lone_event_without_waiting_for_more(
    session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    # The first delta goes at once; the next waits for the window (an hour here) or a flush.
    writer = EventWriter(session_factory, task_id, key_prefix="llm:1", window=3600)
    await writer.emit(EventType.message_delta, {"text": "Hel", "at": 1.0})
    async with asyncio.timeout(5):
        while not await stored(session_factory, task_id):
            await asyncio.sleep(0.05)
    await writer.emit(EventType.message_delta, {"text": "lo", "at": 2.0})
    await writer.emit(EventType.message_delta, {"text": "!", "at": 3.0})
    await asyncio.sleep(0.2)
    assert len(await stored(session_factory, task_id)) == 1
    await writer.flush()
    assert await stored(session_factory, task_id) == [
        (1, "llm:1:1", {"text": "Hel", "at": 1.0}),
        (2, "llm:1:2", {"text": "lo!", "at": 2.0}),  # joined; `at` of its first piece
    ]


async def test_an_event_writer_joins_a_long_answer_into_a_delta_per_window(
    session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    window = 0.05
    writer = EventWriter(session_factory, task_id, key_prefix="llm:1", window=window)
    loop = asyncio.get_running_loop()
    began = loop.time()
    pieces = [f"t{n} " for n in range(300)]
    for n, piece in enumerate(pieces):
        await writer.emit(EventType.message_delta, {"text": piece, "at": float(n)})
        if n == 150:  # another event parts the deltas and is never joined
            await writer.emit(EventType.usage, {"output_tokens": 150})
        await asyncio.sleep(0.002)
    await writer.flush()
    elapsed = loop.time() - began
    events = await stored(session_factory, task_id)
    deltas = [data for _, _, data in events if "text" in data]
    assert "".join(data["text"] for data in deltas) == "".join(pieces)
    assert [data for _, _, data in events if "text" not in data] == [{"output_tokens": 150}]
    firsts = [int(data["at"]) for data in deltas]
    assert firsts[0] == 0 and firsts == sorted(firsts)
    for data, following in zip(deltas, [*firsts[1:], len(pieces)], strict=True):
        assert data["text"] == "".join(pieces[int(data["at"]) : following])
    # Writes begin at least a window apart: one at once, then one per window, and the flush;
    # each has a row of deltas, but the one with the usage event has two and that event.
    assert len(events) <= (elapsed / window + 2) + 2
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))


# Streaming


async def test_the_stream_replays_after_the_last_event_id_and_ends_when_the_task_is_final(
    api: httpx.AsyncClient, session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    await append(session_factory, task_id, delta("a"), delta("b"), delta("c"), delta("d"))
    await finish(session_factory, task_id)
    url = tenant.url(f"/tasks/{task_id}/events")

    everything = await read_stream(api, url, tenant.headers)
    assert [e["id"] for e in everything] == ["1", "2", "3", "4", "5"]
    assert [e["event"] for e in everything] == [*["message.delta"] * 4, "task.status"]
    first = json.loads(everything[0]["data"])
    assert first.pop("created_at")
    assert first == {"seq": 1, "type": "message.delta", "data": {"text": "a"}}

    resumed = await read_stream(api, url, {**tenant.headers, "Last-Event-ID": "2"})
    assert [e["id"] for e in resumed] == ["3", "4", "5"]
    after = await read_stream(api, f"{url}?after=4", tenant.headers)
    assert [e["id"] for e in after] == ["5"]
    # A reconnecting browser repeats the first URL and sends how far it got.
    reconnected = await read_stream(api, f"{url}?after=1", {**tenant.headers, "Last-Event-ID": "3"})
    assert [e["id"] for e in reconnected] == ["4", "5"]
    assert await read_stream(api, url, {**tenant.headers, "Last-Event-ID": "5"}) == []

    garbled = await api.get(url, headers={**tenant.headers, "Last-Event-ID": "abc"})
    assert_error(garbled, 422, "invalid_input")


async def test_the_stream_follows_a_running_task_live_until_it_is_final(
    live_api: str, session_factory: Sessions, tenant: Tenant
):
    task_id = await new_task(session_factory, tenant)
    await append(session_factory, task_id, delta("Hel"))
    url = tenant.url(f"/tasks/{task_id}/events")
    async with (
        asyncio.timeout(15),
        httpx.AsyncClient(base_url=live_api, timeout=None) as client,
        client.stream("GET", url, headers=tenant.headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        assert (await anext(events))["id"] == "1"

        await append(session_factory, task_id, delta("lo"))
        live = await anext(events)
        assert (live["id"], json.loads(live["data"])["data"]) == ("2", {"text": "lo"})
        await append(session_factory, task_id, delta(","), delta(" world"))
        assert [(await anext(events))["id"] for _ in range(2)] == ["3", "4"]

        await finish(session_factory, task_id)
        rest = [event async for event in events]  # ends by itself
    assert [(e["id"], e["event"]) for e in rest] == [("5", "task.status")]


async def test_without_a_notification_the_stream_still_notices_the_end(
    live_api: str, session_factory: Sessions, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
):
    """A status written without an event wakes no listener: the fallback read finds it."""
    monkeypatch.setattr(event_hub, "FALLBACK_POLL_SECONDS", 0.3)
    task_id = await new_task(session_factory, tenant)
    await append(session_factory, task_id, delta("a"))
    url = tenant.url(f"/tasks/{task_id}/events")
    async with (
        asyncio.timeout(10),
        httpx.AsyncClient(base_url=live_api, timeout=None) as client,
        client.stream("GET", url, headers=tenant.headers) as response,
    ):
        events = sse_events(response)
        assert (await anext(events))["id"] == "1"
        async with session_factory.begin() as session:
            await task_repo.set_status(session=session, task_id=task_id, status=TaskStatus.failed)
        assert [event async for event in events] == []


async def test_all_streams_of_an_api_process_share_one_listening_connection(
    live_api: str, session_factory: Sessions, tenant: Tenant, database_url: str
):
    if is_sqlite(database_url):
        pytest.skip("PostgreSQL's LISTEN connection; SQLite is polled")

    async def listeners() -> int:
        async with session_factory() as session:
            query = text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            )
            count: int = (
                await session.execute(query, {"name": event_hub.LISTENER_NAME})
            ).scalar_one()
            return count

    task_ids = [await new_task(session_factory, tenant) for _ in range(5)]
    for task_id in task_ids:
        await append(session_factory, task_id, delta("a"))
    async with asyncio.timeout(15), httpx.AsyncClient(base_url=live_api, timeout=None) as client:
        async with contextlib.AsyncExitStack() as streams:
            for task_id in task_ids:
                response = await streams.enter_async_context(
                    client.stream(
                        "GET", tenant.url(f"/tasks/{task_id}/events"), headers=tenant.headers
                    )
                )
                assert (await anext(sse_events(response)))["id"] == "1"
            assert await listeners() == 1
        # The streams are gone; the process keeps its one listener for the next ones.
        assert await listeners() == 1


async def test_many_streams_of_one_task_cost_one_read_per_update(
    live_api: str, session_factory: Sessions, tenant: Tenant
):
    """20 streams follow one task: each new event is read from the database once, by the
    API process's hub, and handed to all 20."""
    task_id = await new_task(session_factory, tenant)
    await append(session_factory, task_id, delta("a"))
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM task_events" in statement and "ORDER BY task_events.seq" in statement:
            reads.append(statement)

    async with (
        asyncio.timeout(30),
        httpx.AsyncClient(base_url=live_api, timeout=None) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        streams = []
        for _ in range(20):
            response = await stack.enter_async_context(
                client.stream("GET", tenant.url(f"/tasks/{task_id}/events"), headers=tenant.headers)
            )
            events = sse_events(response)
            assert (await anext(events))["id"] == "1"
            streams.append(events)
        event.listen(Engine, "before_cursor_execute", count)
        try:
            for n in range(2, 7):
                await append(session_factory, task_id, delta(str(n)))
                seen = await asyncio.gather(*(anext(events) for events in streams))
                assert {e["id"] for e in seen} == {str(n)}
        finally:
            event.remove(Engine, "before_cursor_execute", count)
    # 5 updates: about one read each (a poll may land between two appends), not 20 x 5.
    assert 5 <= len(reads) <= 10, len(reads)


async def test_only_the_tasks_own_tenant_and_user_group_may_stream_it(
    api: httpx.AsyncClient, session_factory: Sessions, tenant: Tenant, other_tenant: Tenant
):
    async with session_factory.begin() as session:
        mine, my_token = await accounts.create_user_group(
            session=session,
            org_id=tenant.org_id,
            name="Mine",
            provided_id=f"mine-{uuid.uuid4()}",
            environment=UserGroupEnvironment.customer,
        )
        _, their_token = await accounts.create_user_group(
            session=session,
            org_id=tenant.org_id,
            name="Theirs",
            provided_id=f"theirs-{uuid.uuid4()}",
            environment=UserGroupEnvironment.customer,
        )
    task_id = await new_task(session_factory, tenant, user_group_id=mine.id)
    await finish(session_factory, task_id)
    url = tenant.url(f"/tasks/{task_id}/events")

    assert [e["id"] for e in await read_stream(api, url, auth(my_token))] == ["1"]
    assert_error(await api.get(url, headers=auth(their_token)), 404, "not_found")
    assert_error(await api.get(url, headers=other_tenant.headers), 404, "not_found")
    elsewhere = other_tenant.url(f"/tasks/{task_id}/events")
    assert_error(await api.get(elsewhere, headers=other_tenant.headers), 404, "not_found")
    assert_error(await api.get(url), 401, "unauthenticated")
