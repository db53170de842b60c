"""Load: N agent tasks triggered by M concurrent API clients against one embedded stack
(`baton up` as a subprocess: Temporal dev server, one worker, the API), each task on the
offline `scripted:tools` model calling one tool.

Checks that every task reaches a final state and that the API lists each triggered task
exactly once (none lost, none duplicated); prints the trigger call's p50/p99 latency,
tasks/s from the first trigger to the last final state, and the worker's peak memory
(VmHWM of the `baton worker` child of `baton up`). Exits 1 if a check fails.

The baseline is measured first, on the same stack: the idle worker's memory, then
`--baseline-tasks` tasks triggered by one client alone, one after another.

    python bench/load.py [--tasks 500] [--clients 50] [--baseline-tasks 20] [--timeout 900]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

MESSAGE = 'call echo {"text": "load"}'
FINAL = {"completed", "failed", "cancelled", "timed-out", "out-of-credits"}
PAGE = 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedStack:
    """`baton up` on free ports and a fresh data dir, its output in a file."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.log = data_dir / "baton-up.log"
        command = [sys.executable, "-m", "baton", "up", "--data-dir", str(data_dir)]
        command += ["--api-port", str(self.api_port)]
        command += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
        # Only this run's settings: a BATON_DATABASE_URL from the shell would be shared.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT
        )

    def wait_until_running(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "Baton is running" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baton up did not start:\n{self.log.read_text()}")
            time.sleep(0.2)

    def value(self, name: str) -> str:
        """A `NAME=value` line of the first start's bootstrap output."""
        for line in self.log.read_text().splitlines():
            if line.strip().startswith(f"{name}="):
                return line.split("=", 1)[1].strip()
        raise RuntimeError(f"{name} not in the output of baton up")

    def worker_pid(self) -> int:
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"baton" in cmdline and b"worker" in cmdline:
                    return int(pid)
        raise RuntimeError("no worker child of baton up")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


async def create_agent(client: httpx.AsyncClient) -> str:
    tool = await client.post(
        "/tools",
        json={
            "name": "echo",
            "params": [{"name": "text"}],
            "steps": [{"name": "t", "type": "template", "template": "got {{ params.text }}"}],
        },
    )
    tool.raise_for_status()
    agent = await client.post(
        "/agents",
        json={"name": "Load", "model": "scripted:tools", "tools": [{"tool_id": tool.json()["id"]}]},
    )
    agent.raise_for_status()
    agent_id: str = agent.json()["id"]
    return agent_id


async def trigger(
    parent: httpx.AsyncClient, agent_id: str, tasks: int, clients: int
) -> tuple[list[str], list[float]]:
    """`tasks` triggers shared among `clients` clients like `parent`, each with its own
    connections, as separate API users would be."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(tasks):
        queue.put_nowait(number)
    ids: list[str] = []
    latencies: list[float] = []

    async def client_loop() -> None:
        async with httpx.AsyncClient(
            base_url=parent.base_url, headers=parent.headers, timeout=60
        ) as client:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(f"/agents/{agent_id}/tasks", json={"message": MESSAGE})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                ids.append(response.json()["id"])

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return ids, latencies


async def list_all_tasks(client: httpx.AsyncClient) -> list[dict[str, str]]:
    listed: list[dict[str, str]] = []
    params: dict[str, str | int] = {"limit": PAGE}
    while True:
        response = await client.get("/tasks", params=params)
        response.raise_for_status()
        page = response.json()
        listed += page["items"]
        if page["next_cursor"] is None:
            return listed
        params = {"limit": PAGE, "cursor": page["next_cursor"]}


async def wait_all_final(client: httpx.AsyncClient, expected: int) -> list[dict[str, str]]:
    while True:
        listed = await list_all_tasks(client)
        if len(listed) >= expected and all(t["status"] in FINAL for t in listed):
            return listed
        await asyncio.sleep(1)


@dataclass
class Phase:
    """Tasks triggered by some clients and waited for to the last final state."""

    tasks: int
    clients: int
    ids: list[str]
    latencies: list[float]
    seconds: float

    @property
    def tasks_per_s(self) -> float:
        return self.tasks / self.seconds

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


async def phase(
    client: httpx.AsyncClient, agent_id: str, tasks: int, clients: int, already: int
) -> Phase:
    began = time.perf_counter()
    ids, latencies = await trigger(client, agent_id, tasks, clients)
    await wait_all_final(client, already + len(ids))
    return Phase(tasks, clients, ids, latencies, time.perf_counter() - began)


def check(triggered: list[str], listed: list[dict[str, str]]) -> None:
    """Each triggered task listed once and completed, and no task that was not triggered."""
    listed_ids = [t["id"] for t in listed]
    problems = []
    if len(set(triggered)) != len(triggered):
        problems.append(f"{len(set(triggered))} distinct ids for {len(triggered)} triggers")
    if sorted(listed_ids) != sorted(triggered):
        lost = set(triggered) - set(listed_ids)
        extra = len(listed_ids) - len(set(listed_ids) & set(triggered))
        problems.append(f"{len(lost)} triggered tasks missing, {extra} unknown or repeated listed")
    failed = [t["status"] for t in listed if t["status"] != "completed"]
    if failed:
        problems.append(f"{len(failed)} tasks did not complete: {sorted(set(failed))}")
    if problems:
        raise SystemExit("load: " + "; ".join(problems))


async def run(
    stack: EmbeddedStack, *, tasks: int, clients: int, baseline_tasks: int
) -> list[dict[str, Any]]:
    """The baseline first, on the idle stack: the worker's resident memory before any task,
    and `baseline_tasks` tasks triggered by one client, one after another."""
    project = stack.value("BATON_PROJECT_ID")
    headers = {"Authorization": f"Token {stack.value('BATON_TOKEN')}"}
    base = f"http://127.0.0.1:{stack.api_port}/api/v1/projects/{project}"
    worker = stack.worker_pid()
    idle_mb = peak_memory_mb(worker)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        agent_id = await create_agent(client)
        alone = await phase(client, agent_id, baseline_tasks, 1, already=0)
        loaded = await phase(client, agent_id, tasks, clients, already=baseline_tasks)
        check(alone.ids + loaded.ids, await list_all_tasks(client))
    peak_mb = peak_memory_mb(worker)

    print(f"load: {tasks} tasks (1 tool call each) from {clients} concurrent clients")
    print(f"  every task of {baseline_tasks + tasks} completed; each listed once, none unknown")
    print(
        f"  tasks/s:                   {loaded.tasks_per_s:.1f}  ({loaded.seconds:.1f}s in all;"
        f" one client alone: {alone.tasks_per_s:.1f})"
    )
    print(
        f"  trigger latency p50 / p99: {loaded.latency_ms(0.5):.0f} ms / "
        f"{loaded.latency_ms(0.99):.0f} ms  (one client alone: {alone.latency_ms(0.5):.0f} ms / "
        f"{alone.latency_ms(0.99):.0f} ms)"
    )
    print(
        f"  worker peak memory:        {peak_mb:.0f} MB VmHWM  "
        f"(idle, before any task: {idle_mb:.0f} MB)"
    )
    alone_name = f"{baseline_tasks} tasks from 1 client"
    return [
        figure("tasks/s", loaded.tasks_per_s, "tasks/s", "higher", alone_name, alone.tasks_per_s),
        figure(
            "trigger latency p50",
            loaded.latency_ms(0.5),
            "ms",
            "lower",
            alone_name,
            alone.latency_ms(0.5),
        ),
        figure(
            "trigger latency p99",
            loaded.latency_ms(0.99),
            "ms",
            "lower",
            alone_name,
            alone.latency_ms(0.99),
        ),
        figure("worker peak memory (VmHWM)", peak_mb, "MB", "lower", "idle worker", idle_mb),
    ]


def figure(
    name: str, value: float, unit: str, better: str, baseline: str, baseline_value: float
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "better": better,
        "baseline": {"name": baseline, "value": baseline_value},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--baseline-tasks", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900, help="Seconds for the whole run")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="baton-load-"))
    stack = EmbeddedStack(data_dir)
    try:
        stack.wait_until_running()
        figures = asyncio.run(
            asyncio.wait_for(
                run(
                    stack,
                    tasks=args.tasks,
                    clients=args.clients,
                    baseline_tasks=args.baseline_tasks,
                ),
                args.timeout,
            )
        )
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print("BENCH_RESULT " + json.dumps({"benchmark": "load", "figures": figures}))


if __name__ == "__main__":
    main()
