"""Workforce tasks against agent tasks doing the same work: N tasks of a 3-agent handover
chain whose first agent makes two tool calls (`scripted:tools`) and hands over to two agents
that answer (`scripted:echo`), against N tasks of one agent making the same two tool calls;
through the real API (uvicorn, in this process), a worker process (`baton worker`, as `baton
up` runs it) and the embedded Temporal dev server, in one run.

Prints both rates and their ratio, and the history events a handover adds: the events of a
workforce task's whole tree (its workflow and every child's) minus those of one agent task's
tree, per handover. Ends with a `BENCH_RESULT {json}` line for bench/run_all.py.

    python bench/workforce.py [--tasks 40] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baton_stack import ECHO_TOOL, MESSAGE, baton_stack

FINAL = ("completed", "failed", "cancelled", "timed-out", "execution-limit-reached")
HANDOVERS = 2


async def finished(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    while True:
        task: dict[str, Any] = (await client.get(url)).json()
        if task["status"] in FINAL:
            assert task["status"] == "completed", task
            return task
        await asyncio.sleep(0.2)


async def rate(
    tasks: int, concurrency: int, start: Callable[[], Awaitable[dict[str, Any]]]
) -> tuple[float, list[dict[str, Any]]]:
    """Tasks/s of `tasks` tasks, `concurrency` at a time, and each task once finished."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> dict[str, Any]:
        async with gate:
            return await start()

    began = time.perf_counter()
    done = await asyncio.gather(*(one() for _ in range(tasks)))
    return tasks / (time.perf_counter() - began), list(done)


async def tree_events(client: Client, workflow_id: str) -> int:
    """History events of a workflow and of every child it started, all the way down."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    total = len(history.events)
    for event in history.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            total += await tree_events(client, child.workflow_id)
    return total


async def main(tasks: int, concurrency: int) -> None:
    async with baton_stack() as stack:
        base = stack.base
        async with httpx.AsyncClient(headers=stack.headers, timeout=60) as client:

            async def made(path: str, body: dict[str, Any]) -> str:
                response = await client.post(f"{base}{path}", json=body)
                assert response.status_code == 201, response.text
                made_id: str = response.json()["id"]
                return made_id

            tool = await made(
                "/tools",
                ECHO_TOOL,
            )
            caller = await made(
                "/agents",
                {"name": "Caller", "model": "scripted:tools", "tools": [{"tool_id": tool}]},
            )
            second = await made("/agents", {"name": "Second", "model": "scripted:echo"})
            third = await made("/agents", {"name": "Third", "model": "scripted:echo"})
            workforce = await made(
                "/workforces",
                {
                    "name": "Chain",
                    "nodes": [
                        {"id": "caller", "type": "agent", "agent_id": caller},
                        {"id": "second", "type": "agent", "agent_id": second},
                        {"id": "third", "type": "agent", "agent_id": third},
                    ],
                    "edges": [
                        {"from": "caller", "to": "second"},
                        {"from": "second", "to": "third"},
                    ],
                    "entry": "caller",
                },
            )

            async def agent_task() -> dict[str, Any]:
                task_id = await made(f"/agents/{caller}/tasks", {"message": MESSAGE})
                return await finished(client, f"{base}/tasks/{task_id}")

            async def workforce_task() -> dict[str, Any]:
                task_id = await made(f"/workforces/{workforce}/tasks", {"message": MESSAGE})
                return await finished(client, f"{base}/tasks/{task_id}")

            # One of each first: the worker process starts and warms up outside the timings.
            await agent_task()
            await workforce_task()
            agent_rate, agent_done = await rate(tasks, concurrency, agent_task)
            workforce_rate, workforce_done = await rate(tasks, concurrency, workforce_task)
            one_agent = await tree_events(stack.env.client, agent_done[0]["workflow_id"])
            chain = await tree_events(stack.env.client, workforce_done[0]["workflow_id"])

    per_handover = (chain - one_agent) / HANDOVERS
    print(f"workforce: {tasks} tasks each way, concurrency {concurrency}")
    print(f"  one agent, 2 tool calls:         {agent_rate:.1f} tasks/s")
    print(f"  3-agent handover chain, 2 calls: {workforce_rate:.1f} tasks/s")
    print(f"  ratio (chain / one agent):       {workforce_rate / agent_rate:.2f}")
    print(f"  history events, whole tree:      {one_agent} (one agent), {chain} (chain)")
    print(f"  extra history events / handover: {per_handover:.1f}")
    figures: list[dict[str, object]] = [
        {
            "name": "workforce tasks (3-agent handover chain, 2 tool calls)",
            "value": workforce_rate,
            "unit": "tasks/s",
            "better": "higher",
            "baseline": {"name": "one agent task, the same 2 tool calls", "value": agent_rate},
        },
        {"name": "extra history events per handover", "value": per_handover, "unit": "events"},
    ]
    print("BENCH_RESULT " + json.dumps({"benchmark": "workforce", "figures": figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.tasks, args.concurrency))
