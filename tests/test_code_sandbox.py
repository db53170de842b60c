"""A code step is hostile code run by the worker: it must reach nothing of the worker's, of
Baton's or of the machine's. Each test is an attack a project editor could save as a step
(issue 10, finding 1); the step runs exactly as the worker runs it, in bubblewrap."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest
from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from activities.steps import StepRunner
from baton.domain.tools import CodeStep
from baton.integrations.sandbox import Bubblewrap, check, describe, find_bubblewrap
from baton.services.provider_configs import settings_provider_configs
from baton.settings import Settings
from tests.processes import free_port, processes_named, unique_process_name

REPO = Path(__file__).resolve().parents[1]


async def run_step(code: str, inputs: dict[str, Any], settings: Settings | None = None) -> Any:
    """What a code step with `code` gives back when the worker runs it with `inputs` as params."""
    settings = settings or Settings()
    runner = StepRunner(settings, settings_provider_configs(settings))
    step = CodeStep(name="attack", type="code", code=code)
    return await runner.code(step, {"params": inputs, "secrets": {}})


TRY = """
def attempt(action):
    try:
        return action()
    except BaseException as exc:
        return "refused: " + type(exc).__name__
"""


async def test_a_code_step_cannot_read_the_workers_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_SECRET_KEY", "worker-secret-canary-1234567890")
    code = TRY + (
        "import os\n"
        "pid = inputs['params']['worker_pid']\n"
        "result = {\n"
        "    'environ': attempt(lambda: open(f'/proc/{pid}/environ').read()),\n"
        "    'cmdline': attempt(lambda: open(f'/proc/{pid}/cmdline').read()),\n"
        "    'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
        "}\n"
    )
    seen = await run_step(code, {"worker_pid": os.getpid()})
    assert "canary" not in str(seen)
    assert seen["environ"].startswith("refused") and seen["cmdline"].startswith("refused")
    assert os.getpid() not in seen["pids"]
    assert len(seen["pids"]) <= 3  # its own PID namespace: the sandbox's init, itself


async def test_a_code_step_cannot_see_the_machines_secrets_the_database_or_the_repo(
    tmp_path: Path,
):
    database = tmp_path / "baton.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE secrets (value TEXT)")
    hidden = [
        "/etc/shadow",
        "/etc/passwd",
        str(database),
        str(REPO / "baton" / "settings.py"),
        str(REPO / ".env.example"),
        str(Path(pydantic.__file__).parent),  # Baton's dependencies, wherever installed
    ]
    # The runtime's own installed packages are covered by an empty directory.
    runtime_packages = str(Path(os.__file__).parent / "site-packages")
    code = TRY + (
        "import os\n"
        "targets = inputs['params']['hidden']\n"
        "result = {path: {'exists': os.path.exists(path),\n"
        "                 'read': attempt(lambda: open(path, 'rb').read(16).hex())}\n"
        "          for path in targets}\n"
        "result['packages'] = attempt(lambda: os.listdir(inputs['params']['packages']))\n"
    )
    seen = await run_step(code, {"hidden": hidden, "packages": runtime_packages})
    for path in hidden:
        assert seen[path]["exists"] is False, path
        assert seen[path]["read"].startswith("refused"), path
    assert seen["packages"] == [] or seen["packages"].startswith("refused")


async def test_a_code_step_is_not_root_and_has_no_capabilities():
    name = unique_process_name()
    code = (
        "import os, time\n"
        "open('/proc/self/comm', 'w').write(inputs['params']['name'])\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "time.sleep(1.5)\n"  # time for the test to look at it from outside
        "result = {'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(),\n"
        "          'caps': [status[k].strip() for k in ('CapEff', 'CapPrm', 'CapBnd')],\n"
        "          'no_new_privs': status['NoNewPrivs'].strip()}\n"
    )
    step = asyncio.create_task(run_step(code, {"name": name}))
    deadline = time.monotonic() + 5
    while not (found := processes_named(name)):
        assert time.monotonic() < deadline, "the step's process never showed up"
        await asyncio.sleep(0.02)
    [pid] = found
    outside = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    own_user_namespace = os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    inside = await step

    assert (inside["uid"], inside["euid"], inside["gid"]) == (65534, 65534, 65534)
    assert inside["caps"] == ["0000000000000000"] * 3
    assert inside["no_new_privs"] == "1"
    # Seen from the host: no capability, in a user namespace of its own, and never root: a
    # root worker's code is nobody there too, wherever its Python runtime lives (on CI, pyenv
    # under /root, which others cannot read); any other worker's keeps the worker's uid.
    assert outside["CapEff"].strip() == outside["CapPrm"].strip() == "0000000000000000"
    assert outside["CapBnd"].strip() == "0000000000000000"
    assert own_user_namespace
    host_uids = outside["Uid"].split()  # real, effective, saved, filesystem
    assert host_uids == [str(65534 if os.getuid() == 0 else os.getuid())] * 4
    if os.getuid() == 0:
        assert outside["Groups"].strip() == ""


async def test_a_code_step_cannot_make_a_user_namespace_of_its_own():
    # Inside one, it would be root again, with every capability over what it could mount.
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "result = {'status': libc.unshare(0x10000000), 'errno': ctypes.get_errno()}\n"
    )
    assert await run_step(code, {}) == {"status": -1, "errno": errno.ENOSPC}


async def test_a_code_step_cannot_write_outside_its_directory(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # writable by anyone: only the sandbox can keep the code out
    planted = unique_process_name()
    targets = [
        outside / planted,
        Path("/") / planted,
        Path(sys.base_prefix) / planted,
        Path("/dev/shm") / planted,  # memory, with no bound of its own
    ]
    code = TRY + (
        "def plant(path):\n"
        "    with open(path, 'w') as f:\n"
        "        f.write('pwned')\n"
        "    return 'written'\n"
        "result = {path: attempt(lambda: plant(path)) for path in inputs['params']['targets']}\n"
        "result['own'] = plant('mine.txt')\n"
    )
    try:
        seen = await run_step(code, {"targets": [str(path) for path in targets]})
        assert seen["own"] == "written"  # its own directory is writable
        for path in targets:
            assert seen[str(path)].startswith("refused"), path
            assert not path.exists(), path
    finally:
        for path in targets:  # what an unsandboxed run planted
            path.unlink(missing_ok=True)


async def test_a_code_step_cannot_change_the_kernels_settings():
    # Writing a setting's own value back changes nothing, even where the write goes through.
    code = TRY + (
        "import os\n"
        "path = '/proc/sys/kernel/printk_ratelimit'\n"
        "value = open(path).read()\n"
        "def write_back():\n"
        "    with open(path, 'w') as f:\n"
        "        f.write(value)\n"
        "    return 'written'\n"
        "result = {'write': attempt(write_back),\n"
        "          'writable': [p for p in ('/proc/sys/kernel/core_pattern',\n"
        "                                   '/proc/sys/kernel/modprobe',\n"
        "                                   '/proc/sys/vm/drop_caches', '/proc/sysrq-trigger')\n"
        "                       if os.access(p, os.W_OK)],\n"
        "          'devnull': attempt(lambda: open('/dev/null', 'w').write('still fine'))}\n"
    )
    seen = await run_step(code, {})
    assert seen["write"].startswith("refused")
    assert seen["writable"] == []
    assert seen["devnull"] == len("still fine")


async def test_a_code_step_cannot_connect_to_a_port_listening_on_the_workers_loopback():
    connections = 0

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    port = free_port()
    server = await asyncio.start_server(accept, "127.0.0.1", port)
    code = TRY + (
        "import socket\n"
        "def connect(host):\n"
        "    socket.create_connection((host, inputs['params']['port']), timeout=2).close()\n"
        "    return 'connected'\n"
        "result = {host: attempt(lambda: connect(host)) for host in ('127.0.0.1', 'localhost')}\n"
    )
    async with server:
        seen = await run_step(code, {"port": port})
    assert connections == 0
    assert all(outcome.startswith("refused") for outcome in seen.values()), seen


async def test_a_double_forked_session_leader_does_not_survive_the_step():
    name = unique_process_name()
    code = (
        "import os, time\n"
        "try:\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        "            open('/proc/self/comm', 'w').write(inputs['params']['name'])\n"
        "            time.sleep(60)\n"
        "        os._exit(0)\n"
        "    result = 'forked'\n"
        "except OSError:\n"
        # RLIMIT_NPROC holds where the sandbox is nobody on the host too.
        "    result = 'fork refused'\n"
        "time.sleep(0.3)\n"
    )
    outcome = await run_step(code, {"name": name})
    deadline = time.monotonic() + 2
    while survivors := processes_named(name):
        if time.monotonic() > deadline:
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail(f"a process of the step ({outcome}) outlived it: {survivors}")
        await asyncio.sleep(0.05)


async def test_without_bubblewrap_code_steps_are_refused_with_what_to_install():
    settings = Settings(code_bwrap_path="/nonexistent/bwrap")
    with pytest.raises(ApplicationError) as caught:
        await run_step("result = 1", {}, settings)
    error = caught.value
    assert error.non_retryable
    assert error.type == "code_sandbox_unavailable"
    assert "'/nonexistent/bwrap' was not found" in error.message
    assert "`bubblewrap`" in error.message and "BATON_CODE_SANDBOX=none" in error.message


async def test_in_development_code_steps_may_run_unsandboxed_and_the_worker_warns(
    caplog: pytest.LogCaptureFixture,
):
    from worker import report_code_sandbox

    settings = Settings(code_sandbox="none", code_bwrap_path="/nonexistent/bwrap")
    with caplog.at_level(logging.WARNING, logger="baton.worker"):
        await report_code_sandbox(settings)
    assert "code steps run WITHOUT a sandbox" in caplog.text
    # Without the sandbox the repo is in plain view: this is what production refuses.
    seen = await run_step(
        "import os\nresult = os.path.exists(inputs['params']['repo'])",
        {"repo": str(REPO)},
        settings,
    )
    assert seen is True


def test_production_refuses_unsandboxed_code_steps():
    with pytest.raises(ValidationError, match=r"BATON_CODE_SANDBOX=none .* production refuses"):
        Settings(environment="production", secret_key="x" * 48, code_sandbox="none")
    # With code steps off there is nothing to sandbox.
    Settings(
        environment="production",
        secret_key="x" * 48,
        code_sandbox="none",
        code_steps_enabled=False,
    )


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin")


@pytest.mark.skipif(
    os.geteuid() != 0 or SYSTEM_PYTHON is None,
    reason="needs a root worker and a Python under /usr, which others may read",
)
async def test_a_root_workers_sandbox_is_nobody_on_the_host_where_others_may_read_python():
    assert SYSTEM_PYTHON is not None
    python = os.path.realpath(SYSTEM_PYTHON)
    described = describe("bwrap", python=python, prefix="/usr")
    assert isinstance(described, Bubblewrap), described
    sandbox = check(described)
    assert isinstance(sandbox, Bubblewrap), sandbox
    assert sandbox.host_uid == 65534
    name = unique_process_name()
    script = (
        "import os, resource, time\n"
        f"open('/proc/self/comm', 'w').write({name!r})\n"
        "resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))\n"  # as the code runner sets it
        "try:\n"
        "    os.fork() or os._exit(0)\n"
        "    print('forked')\n"
        "except OSError:\n"
        "    print('fork refused')\n"
        "time.sleep(1)\n"
    )
    work = sandbox.work_dir()
    try:
        process = await asyncio.create_subprocess_exec(
            *sandbox.command(
                [python, "-I", "-S", "-c", script], work=work, tmp_bytes=1 << 20, seccomp_fd=None
            ),
            stdout=asyncio.subprocess.PIPE,
            env={},
            **sandbox.process_options(),
        )
        deadline = time.monotonic() + 5
        while not (found := processes_named(name)):
            assert time.monotonic() < deadline, "the sandboxed process never showed up"
            await asyncio.sleep(0.02)
        status = Path(f"/proc/{found[0]}/status").read_text()
        stdout, _ = await process.communicate()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == ["65534"] * 4  # seen from the host
    assert stdout.decode().strip() == "fork refused"  # RLIMIT_NPROC holds for nobody


async def test_a_session_leader_the_code_could_start_would_still_die_with_the_sandbox():
    # Defence in depth, below the filter that refuses new processes: with the filter off,
    # the PID namespace still ends whatever the code started once its first process ends.
    sandbox = await find_bubblewrap()
    name = unique_process_name()
    script = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    open('/proc/self/comm', 'w').write({name!r})\n"
        "    time.sleep(60)\n"
        # Long enough for the test to see the session leader on a loaded machine.
        "time.sleep(2)\n"
    )
    work = sandbox.work_dir()
    try:
        process = await asyncio.create_subprocess_exec(
            *sandbox.command(
                [sandbox.python, "-I", "-S", "-c", script],
                work=work,
                tmp_bytes=1 << 20,
                seccomp_fd=None,
            ),
            env={},
            **sandbox.process_options(),
        )
        deadline = time.monotonic() + 10
        while not processes_named(name):
            assert time.monotonic() < deadline, "the session leader never showed up"
            await asyncio.sleep(0.02)
        await process.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    deadline = time.monotonic() + 2
    while survivors := processes_named(name):
        if time.monotonic() > deadline:
            for pid in survivors:
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"a session leader outlived its sandbox: {survivors}")
        await asyncio.sleep(0.05)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root worker")
def test_a_root_worker_without_setpriv_refuses_code_steps_rather_than_run_them_as_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    private = tmp_path / "runtime"
    private.mkdir(mode=0o700)  # as pyenv under /root: only root may mount it
    which = shutil.which
    monkeypatch.setattr(
        "baton.integrations.sandbox.shutil.which",
        lambda name: None if name == "setpriv" else which(name),
    )
    described = describe("bwrap", prefix=str(private))
    assert isinstance(described, str)
    assert "setpriv" in described and "65534" in described
