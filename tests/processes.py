"""The stack's parts as real child processes for tests that kill them: the Temporal dev
server on a SQLite file, workers (`baton worker`) and the API (`baton api`), each in a
session of its own so a SIGKILL takes the whole process group and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from baton import temporal
from tests.support import eventually, venv_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any `BATON_*` variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update(extra)
    return env


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    await eventually(predicate, timeout=timeout, every=0.05, what=what)


def unique_process_name() -> str:
    return f"baton-{secrets.token_hex(4)}"  # within the 15 characters a process name keeps


def processes_named(name: str) -> list[int]:
    """The host pids of live processes named `name` (/proc/<pid>/comm): how a test finds, from
    outside, a process that sandboxed code renamed (the pids it sees are its namespace's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # ended meanwhile
        if state != "Z":  # a zombie has finished running; only its exit status is left
            found.append(int(entry.name))
    return found


def spawn(command: list[str], *, env: dict[str, str], log: Path | None) -> subprocess.Popen[bytes]:
    # Appended to, so a restarted process's output follows its predecessor's.
    with open(log or os.devnull, "ab") as output:
        return subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: no shutdown hook runs, as in a crash or an OOM kill."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass(frozen=True)
class Parts:
    """What a worker and the API need to find the database, Temporal and their queue."""

    database_url: str
    temporal_address: str
    task_queue: str
    data_dir: Path

    def environment(self) -> dict[str, str]:
        return clean_env(
            BATON_DATABASE_URL=self.database_url,
            BATON_TEMPORAL_ADDRESS=self.temporal_address,
            BATON_TEMPORAL_TASK_QUEUE=self.task_queue,
            BATON_DATA_DIR=str(self.data_dir),
            BATON_SECRET_KEY=os.environ["BATON_SECRET_KEY"],
            # Tool steps in these tests call a server on this machine.
            BATON_HTTP_ALLOW_NETWORKS=json.dumps(["127.0.0.0/8"]),
        )


def start_worker(parts: Parts, log: Path | None = None) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "baton", "worker"], env=parts.environment(), log=log)


class ApiProcess:
    """`baton api` on a fixed port, so a restarted API answers at the same address."""

    def __init__(self, parts: Parts, log: Path | None = None) -> None:
        self.parts = parts
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> None:
        self.process = spawn(
            [sys.executable, "-m", "baton", "api", "--port", str(self.port)],
            env=self.parts.environment(),
            log=self.log,
        )
        await wait_until(self._healthy, timeout, "the API to answer")

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "the API exited"
        try:
            return httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        kill(self.process)


class TemporalDevServer:
    """`temporal server start-dev` on a SQLite file, as `baton up` runs it; a restart reuses
    the file and the port, so clients that reconnect find the same server and history."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60) -> None:
        command = [
            venv_binary("temporal"),
            "server",
            "start-dev",
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            *temporal.DEV_SERVER_SQLITE_ARGS,
            "--log-level",
            "warn",
            *temporal.dev_server_search_attribute_args(),
        ]
        self.process = spawn(command, env=clean_env(), log=self.data_dir / "temporal.log")
        deadline = time.monotonic() + timeout
        while not await self._serving():
            assert self.process.poll() is None, (self.data_dir / "temporal.log").read_text()
            assert time.monotonic() < deadline, "the Temporal dev server did not start"
            await asyncio.sleep(0.2)

    async def _serving(self) -> bool:
        """The port opens before the namespace is ready: ask for its search attributes."""
        try:
            client = await Client.connect(self.address)
            await temporal.ensure_search_attributes(client, "default")
        except (RuntimeError, RPCError):
            return False
        return True

    def kill(self) -> None:
        kill(self.process)


class RunningStack:
    """`baton up` in a subprocess, its output in a file we can read while it runs."""

    def __init__(self, data_dir: Path, log: Path, **env: str) -> None:
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "baton",
                "up",
                "--data-dir",
                str(data_dir),
                "--api-port",
                str(self.api_port),
                "--temporal-port",
                str(self.temporal_port),
                "--ui-port",
                str(self.ui_port),
            ],
            env=clean_env(**env),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_until_running(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "Baton is running" not in self.output:
            assert self.process.poll() is None, self.output
            assert time.monotonic() < deadline, self.output
            time.sleep(0.2)

    def value(self, name: str) -> str:
        line = next(x for x in self.output.splitlines() if x.strip().startswith(f"{name}="))
        return line.split("=", 1)[1].strip()

    def interrupt(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
