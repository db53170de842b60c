"""Agent tasks under concurrency: N tasks on the offline `scripted:tools` model, each calling
two tools, through the real API (uvicorn, in this process), a worker process (`baton worker`,
as `baton up` runs it) and the embedded Temporal dev server.

One untimed task first lets the worker process start. Every client follows its task's SSE
stream to the task's end. Prints tasks/s, the trigger call's p50/p99 latency, and the p50
delay from a token delta being produced (its `at` stamp, taken in the LLM activity) to it
reaching an SSE client (and its two halves), then a `BENCH_RESULT {json}` line for
bench/run_all.py. The baseline, in the same run and on the
same Temporal server: as many plain workflows doing the least such a task needs (one
activity per model call, one per tool call; bench/plain_agent.py), with the same concurrency.
Then what metering costs (bench/metering.py): the same tasks on two more stacks, one metered
(a plan with allowances, the models priced) and one with metering off, alternately first.

    python bench/agent_tasks.py [--tasks 100] [--concurrency 20] [--streams 10] [--rounds 2]
    python bench/agent_tasks.py --only-metering --rounds 6   # metering's pairs alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baton_stack import ECHO_TOOL, MESSAGE, baton_stack
from metering import PLAN, overhead
from plain_agent import PlainAgent, model, tool


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Delays:
    """Of each token delta: produced (its `at` stamp) to received by the SSE client, and the
    two halves, produced to written (the event's `created_at`, in the worker's transaction)
    and written to received (the API's read and the stream)."""

    received: list[float] = field(default_factory=list)
    written: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)


async def watch(client: httpx.AsyncClient, url: str, delays: Delays | None) -> None:
    """Reads a task's SSE stream to its end (the task's end), noting each delta's delays."""
    async with client.stream("GET", url, timeout=120) as response:
        async for line in response.aiter_lines():
            if delays is None or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            produced = event["data"].get("at")
            if event["type"] == "message.delta" and produced:
                now = time.time()
                written = datetime.fromisoformat(event["created_at"])
                written_at = written.replace(tzinfo=written.tzinfo or UTC).timestamp()
                delays.received.append(now - produced)
                delays.written.append(written_at - produced)
                delays.sent.append(now - written_at)


async def plain_tasks(client: Client, tasks: int, concurrency: int) -> float:
    """The baseline's tasks/s: `tasks` PlainAgent workflows, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await client.execute_workflow(
                PlainAgent.run, f"task {i}", id=f"plain-agent-{uuid.uuid4()}", task_queue="plain"
            )

    async with Worker(client, task_queue="plain", workflows=[PlainAgent], activities=[model, tool]):
        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(tasks)))
        return tasks / (time.perf_counter() - began)


async def create_agent(client: httpx.AsyncClient, base: str) -> str:
    tool = await client.post(f"{base}/tools", json=ECHO_TOOL)
    agent = await client.post(
        f"{base}/agents",
        json={
            "name": "Bench",
            "model": "scripted:tools",
            "tools": [{"tool_id": tool.json()["id"]}],
        },
    )
    agent_id: str = agent.json()["id"]
    return agent_id


async def metered_tasks(tasks: int, concurrency: int, *, metering: bool) -> float:
    """Tasks/s of `tasks` tasks on a stack of their own, metered or not; each client waits
    for its task's end on its stream."""
    async with (
        baton_stack(metering=metering) as stack,
        httpx.AsyncClient(headers=stack.headers, timeout=60) as client,
    ):
        agent_id = await create_agent(client, stack.base)
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                response = await client.post(
                    f"{stack.base}/agents/{agent_id}/tasks", json={"message": MESSAGE}
                )
                task_id = response.json()["id"]
                await watch(client, f"{stack.base}/tasks/{task_id}/events", None)
                task = (await client.get(f"{stack.base}/tasks/{task_id}")).json()
                assert task.get("status") == "completed", task

        await one()  # untimed: the worker process starts
        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(tasks)))
        return tasks / (time.perf_counter() - began)


async def metering_rates(tasks: int, concurrency: int, rounds: int) -> tuple[float, float]:
    """Metered and unmetered tasks/s over `rounds` pairs, alternately first; prints each
    pair's cost (their spread is the noise) and the median of them."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_no in range(rounds):
        for metering in (True, False) if round_no % 2 == 0 else (False, True):
            rates[metering].append(await metered_tasks(tasks, concurrency, metering=metering))
    costs = [overhead(m, u) for m, u in zip(rates[True], rates[False], strict=True)]
    metered, unmetered = (sum(rates[m]) / len(rates[m]) for m in (True, False))
    print(f"  metered / metering off:    {metered:.1f} / {unmetered:.1f} tasks/s")
    print(
        f"  metering cost:             {overhead(metered, unmetered):.1%} (target under 5%; "
        f"round by round {', '.join(f'{c:.0%}' for c in costs)}; median "
        f"{statistics.median(costs):.1%})"
    )
    return metered, unmetered


async def main(tasks: int, concurrency: int, streams: int, rounds: int = 2) -> None:
    latencies: list[float] = []
    delays = Delays()
    async with baton_stack() as stack:
        base = stack.base
        async with httpx.AsyncClient(headers=stack.headers, timeout=60) as client:
            agent_id = await create_agent(client, base)
            gate = asyncio.Semaphore(concurrency)

            async def one(i: int, *, timed: bool = True) -> None:
                async with gate:
                    started = time.perf_counter()
                    response = await client.post(
                        f"{base}/agents/{agent_id}/tasks", json={"message": MESSAGE}
                    )
                    if timed:
                        latencies.append(time.perf_counter() - started)
                    task_id = response.json()["id"]
                    # Every client waits for its task's end on the task's stream (polling the task
                    # instead, 5 times a second, loaded the API with ~100 requests/s); the deltas of
                    # the first `streams` are timed.
                    watched = delays if timed and i < streams else None
                    await watch(client, f"{base}/tasks/{task_id}/events", watched)
                    task = (await client.get(f"{base}/tasks/{task_id}")).json()
                    assert task.get("status") == "completed", task

            # One task first, untimed: the worker process starts (imports, connects, first
            # workflow) outside the figures, as the baseline's worker is already running.
            warming = time.perf_counter()
            await one(-1, timed=False)
            warm_up = time.perf_counter() - warming
            began = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(tasks)))
            elapsed = time.perf_counter() - began

        plain_rate = await plain_tasks(stack.env.client, tasks, concurrency)
    print(f"agent_tasks: {tasks} tasks (2 tool calls each), concurrency {concurrency}")
    print(f"  tasks/s:                   {tasks / elapsed:.1f}  ({elapsed:.1f}s in all)")
    print(f"  first task, untimed:       {warm_up:.1f}s (the worker process starting)")
    print(f"  plain workflow baseline:   {plain_rate:.1f} tasks/s")
    print(f"  ratio (Baton / plain):     {tasks / elapsed / plain_rate:.2f}  (target >= 0.8)")
    metered, unmetered = await metering_rates(tasks, concurrency, rounds)
    print(
        f"  trigger latency p50 / p99: {percentile(latencies, 0.5) * 1000:.0f} ms / "
        f"{percentile(latencies, 0.99) * 1000:.0f} ms"
    )
    figures: list[dict[str, object]] = [
        {
            "name": "agent tasks (2 tool calls each)",
            "value": tasks / elapsed,
            "unit": "tasks/s",
            "better": "higher",
            "baseline": {
                "name": "plain workflow: an activity per model and tool call",
                "value": plain_rate,
            },
        },
        {
            "name": f"agent tasks, metered: plan {PLAN}, priced models",
            "value": metered,
            "unit": "tasks/s",
            "better": "higher",
            "baseline": {"name": "the same with metering off", "value": unmetered},
        },
        {"name": "trigger latency p50", "value": percentile(latencies, 0.5) * 1000, "unit": "ms"},
        {"name": "trigger latency p99", "value": percentile(latencies, 0.99) * 1000, "unit": "ms"},
    ]
    if delays.received:
        p50 = {name: statistics.median(values) * 1000 for name, values in vars(delays).items()}
        print(
            f"  delta -> SSE client p50:   {p50['received']:.0f} ms "
            f"({len(delays.received)} deltas on {streams} streams; produced -> written "
            f"{p50['written']:.0f} ms, written -> client {p50['sent']:.0f} ms)"
        )
        figures.append(
            {"name": "token delta -> SSE client p50", "value": p50["received"], "unit": "ms"}
        )
    print("BENCH_RESULT " + json.dumps({"benchmark": "agent_tasks", "figures": figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="metered/unmetered pairs")
    parser.add_argument(
        "--only-metering", action="store_true", help="measure only metering's pairs"
    )
    args = parser.parse_args()
    if args.only_metering:
        print(f"agent_tasks: {args.tasks} tasks (2 tool calls each), metering only")
        asyncio.run(metering_rates(args.tasks, args.concurrency, args.rounds))
    else:
        asyncio.run(main(args.tasks, args.concurrency, args.streams, args.rounds))
