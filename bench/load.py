"""Load: N agent tasks triggered by M concurrent API clients against one embedded stack
(`baton up` as a subprocess: Temporal dev server, one worker, the API), each task on the
offline `scripted:tools` model calling one tool.

Checks that every task reaches a final state and that the API lists each triggered task
exactly once (none lost, none duplicated); prints the trigger call's p50/p99 latency,
tasks/s from the first trigger to the last final state, and the worker's peak memory
(VmHWM of the `baton worker` child of `baton up`). Exits 1 if a check fails.

    python bench/load.py [--tasks 500] [--clients 50] [--timeout 900]
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
from pathlib import Path

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
    base: str, headers: dict[str, str], agent_id: str, tasks: int, clients: int
) -> tuple[list[str], list[float]]:
    """`tasks` triggers shared among `clients` clients, each its own connection pool."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(tasks):
        queue.put_nowait(number)
    ids: list[str] = []
    latencies: list[float] = []

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
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
    while True:
        page = await client.get("/tasks", params={"limit": PAGE, "offset": len(listed)})
        page.raise_for_status()
        listed += page.json()
        if len(page.json()) < PAGE:
            return listed


async def wait_all_final(client: httpx.AsyncClient, expected: int) -> list[dict[str, str]]:
    while True:
        listed = await list_all_tasks(client)
        if len(listed) >= expected and all(t["status"] in FINAL for t in listed):
            return listed
        await asyncio.sleep(1)


async def run(stack: EmbeddedStack, tasks: int, clients: int, timeout: float) -> dict[str, float]:
    project = stack.value("BATON_PROJECT_ID")
    headers = {"Authorization": f"Token {stack.value('BATON_TOKEN')}"}
    base = f"http://127.0.0.1:{stack.api_port}/api/v1/projects/{project}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        agent_id = await create_agent(client)
        began = time.perf_counter()
        async with asyncio.timeout(timeout):
            ids, latencies = await trigger(base, headers, agent_id, tasks, clients)
            listed = await wait_all_final(client, len(ids))
        elapsed = time.perf_counter() - began

    listed_ids = [t["id"] for t in listed]
    statuses = [t["status"] for t in listed]
    problems = []
    if len(ids) != tasks or len(set(ids)) != tasks:
        problems.append(f"{len(set(ids))} distinct ids for {tasks} triggers")
    if sorted(listed_ids) != sorted(ids):
        lost, extra = set(ids) - set(listed_ids), len(listed_ids) - len(set(listed_ids))
        problems.append(f"listing: {len(lost)} triggered tasks missing, {extra} duplicates")
    failed = [s for s in statuses if s != "completed"]
    if failed:
        problems.append(f"{len(failed)} tasks did not complete: {sorted(set(failed))}")
    if problems:
        raise SystemExit("load: " + "; ".join(problems))
    return {
        "tasks": tasks,
        "clients": clients,
        "tasks_per_s": tasks / elapsed,
        "elapsed_s": elapsed,
        "trigger_p50_ms": percentile(latencies, 0.5) * 1000,
        "trigger_p99_ms": percentile(latencies, 0.99) * 1000,
        "worker_peak_mb": peak_memory_mb(stack.worker_pid()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=900, help="Seconds for the whole run")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="baton-load-"))
    stack = EmbeddedStack(data_dir)
    try:
        stack.wait_until_running()
        figures = asyncio.run(run(stack, args.tasks, args.clients, args.timeout))
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"load: {args.tasks} tasks (1 tool call each) from {args.clients} concurrent clients")
    print("  every task completed; each listed once")
    print(
        f"  tasks/s:                   {figures['tasks_per_s']:.1f}  "
        f"({figures['elapsed_s']:.1f}s in all)"
    )
    print(
        f"  trigger latency p50 / p99: {figures['trigger_p50_ms']:.0f} ms / "
        f"{figures['trigger_p99_ms']:.0f} ms"
    )
    print(f"  worker peak memory:        {figures['worker_peak_mb']:.0f} MB (VmHWM)")
    print("RESULT " + json.dumps({"benchmark": "load", **figures}))


if __name__ == "__main__":
    main()
