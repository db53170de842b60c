"""A follow-up the API accepts (202) is always answered, however it races the task's end or its
continue-as-new; one it cannot accept is refused with a 409 and never stored. Hundreds of sends
are raced against tasks that end by their idle timeout, tasks that end right after their first
answer, and a task that keeps continuing as new."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.support import Tenant, api_client, worker_on

ENDED = ("completed", "failed", "timed_out", "cancelled")


@dataclass
class Sends:
    """What each send was answered, by the task it went to."""

    accepted: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, list[str]] = field(default_factory=dict)

    def record(self, task_id: str, content: str, response: httpx.Response) -> bool:
        if response.status_code == 202:
            self.accepted.setdefault(task_id, []).append(content)
            return True
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "conflict"
        self.refused.setdefault(task_id, []).append(content)
        return False

    @property
    def counts(self) -> tuple[int, int]:
        return (
            sum(len(v) for v in self.accepted.values()),
            sum(len(v) for v in self.refused.values()),
        )


async def new_agent(api: httpx.AsyncClient, tenant: Tenant, idle_timeout: float) -> str:
    created = await api.post(
        tenant.url("/agents"),
        json={"name": "Echo", "model": "scripted:echo", "idle_timeout_seconds": idle_timeout},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    agent_id: str = created.json()["id"]
    return agent_id


async def start_task(api: httpx.AsyncClient, tenant: Tenant, agent_id: str) -> dict[str, Any]:
    started = await api.post(
        tenant.url(f"/agents/{agent_id}/tasks"), json={"message": "hello"}, headers=tenant.headers
    )
    assert started.status_code == 201, started.text
    task: dict[str, Any] = started.json()
    return task


async def send(
    api: httpx.AsyncClient, tenant: Tenant, sends: Sends, task_id: str, content: str
) -> bool:
    response = await api.post(
        tenant.url(f"/tasks/{task_id}/messages"), json={"message": content}, headers=tenant.headers
    )
    return sends.record(task_id, content, response)


async def read(api: httpx.AsyncClient, tenant: Tenant, task_id: str) -> dict[str, Any]:
    response = await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def unanswered(task: dict[str, Any], accepted: list[str]) -> list[str]:
    """The accepted messages the transcript lacks, or has without the echo that answers it."""
    messages = task["messages"]
    asked = [m["content"] for m in messages if m["role"] == "user"]
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    return [
        content
        for content in accepted
        if content not in asked or not any(a.endswith(f"You said: {content}") for a in answers)
    ]


async def wait_answered(
    api: httpx.AsyncClient, tenant: Tenant, sends: Sends, *, final: bool, seconds: float = 90
) -> None:
    """Every accepted message answered (and, with `final`, every task ended); every refused
    one absent from its task."""
    pending = dict(sends.accepted)
    task: dict[str, Any] = {}
    try:
        async with asyncio.timeout(seconds):
            while pending:
                for task_id, accepted in list(pending.items()):
                    task = await read(api, tenant, task_id)
                    ended = task["status"] in ENDED
                    if not unanswered(task, accepted) and (ended or not final):
                        del pending[task_id]
                await asyncio.sleep(0.2)
    except TimeoutError:
        task_id, accepted = next(iter(pending.items()))
        missing = unanswered(task, accepted)
        raise AssertionError(
            f"task {task_id} ({task.get('status')}) accepted and never answered {missing}"
        ) from None
    for task_id, refused in sends.refused.items():
        asked = {m["content"] for m in (await read(api, tenant, task_id))["messages"]}
        assert not asked & set(refused), "a refused message was stored"


async def test_follow_ups_racing_the_idle_timeout_are_answered_or_refused(
    api: httpx.AsyncClient, tenant: Tenant, worker: Any
):
    """Sends land around the moment the idle timer fires (the old signal lost some of those
    landing just after); a task that refuses one is replaced by a new one, so the race
    repeats."""
    agent_id = await new_agent(api, tenant, idle_timeout=0.5)
    sends = Sends()
    rng = random.Random(12)

    async def sender(lane: int) -> None:
        task = await start_task(api, tenant, agent_id)
        asked = ["hello"]
        for n in range(12):
            # Once the task is idle, its timer fires 0.5 s later: send around that moment.
            async with asyncio.timeout(30):
                while True:
                    seen = await read(api, tenant, task["id"])
                    if seen["status"] in ENDED or (
                        seen["status"] == "idle" and not unanswered(seen, asked)
                    ):
                        break
                    await asyncio.sleep(0.01)
            # Up to twice the timeout: a loaded machine ends tasks late, and the race must
            # still see both outcomes.
            await asyncio.sleep(rng.uniform(0.4, 1.0))
            content = f"lane {lane} message {n}"
            if await send(api, tenant, sends, task["id"], content):
                asked = [content]
            else:
                task, asked = await start_task(api, tenant, agent_id), ["hello"]

    await asyncio.gather(*(sender(lane) for lane in range(10)))
    await wait_answered(api, tenant, sends, final=True)
    accepted, refused = sends.counts
    assert accepted + refused == 120
    # The race was run: both outcomes happened.
    assert accepted > 0 and refused > 0, sends.counts


async def test_follow_ups_sent_while_a_task_completes_after_one_answer(
    api: httpx.AsyncClient, tenant: Tenant, worker: Any
):
    """`idle_timeout_seconds: 0` ends the task after its answer; messages sent during that
    first turn are answered first, or refused."""
    agent_id = await new_agent(api, tenant, idle_timeout=0)
    sends = Sends()

    async def one_task(k: int) -> None:
        task = await start_task(api, tenant, agent_id)
        for n in range(4):
            await send(api, tenant, sends, task["id"], f"task {k} message {n}")
            await asyncio.sleep(0.02 * n)

    await asyncio.gather(*(one_task(k) for k in range(25)))
    await wait_answered(api, tenant, sends, final=True)
    accepted, refused = sends.counts
    assert accepted + refused == 100
    assert accepted > 0, sends.counts


async def test_follow_ups_racing_continue_as_new_are_all_answered(
    eager_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    async with (
        worker_on(eager_env.client, settings, session_factory),
        api_client(settings, eager_env.client) as api,
    ):
        await race_continue_as_new(api, tenant, eager_env)


async def race_continue_as_new(
    api: httpx.AsyncClient, tenant: Tenant, env: WorkflowEnvironment
) -> None:
    agent_id = await new_agent(api, tenant, idle_timeout=120)
    task = await start_task(api, tenant, agent_id)
    handle = env.client.get_workflow_handle(task["workflow_id"])
    sends = Sends()
    runs: set[str] = set()
    rng = random.Random(7)

    async def sender(lane: int) -> None:
        # Each lane waits for its answer, then sends again within 50 ms: the task is going
        # idle then, which is where it continues as new.
        for n in range(50):
            content = f"lane {lane} message {n}"
            await send(api, tenant, sends, task["id"], content)
            async with asyncio.timeout(30):
                while unanswered(await read(api, tenant, task["id"]), [content]):
                    await asyncio.sleep(0.02)
            runs.add((await handle.describe()).run_id)
            await asyncio.sleep(rng.uniform(0, 0.05))

    await asyncio.gather(*(sender(lane) for lane in range(2)))
    await wait_answered(api, tenant, sends, final=False, seconds=180)
    assert sends.counts == (100, 0)
    # The sends did race continue-as-new. How often depends on timing: the task continues as
    # new only when it goes idle with an empty inbox, which the two lanes seldom leave it.
    runs.add((await handle.describe()).run_id)
    assert len(runs) >= 2, len(runs)
