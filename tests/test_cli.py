"""The `baton` command as a newcomer uses it: real processes, real ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.db.repositories import integrations as integration_repo
from baton.db.repositories import secrets as secret_repo
from baton.domain.accounts import Role
from baton.domain.integrations import IntegrationKind, IntegrationSpec
from baton.secret_key import ensure_key_file, key_file, read_keys
from baton.security import SecretBox
from baton.settings import Settings
from tests.processes import RunningStack, clean_env, free_port, port_open
from tests.support import venv_binary


def baton(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "baton", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_admin_bootstrap_prints_a_working_owner_token(
    migrated_database: str, tmp_path: Path, session_factory: async_sessionmaker[AsyncSession]
):
    result = baton(
        "admin",
        "bootstrap",
        "--json",
        "--data-dir",
        str(tmp_path),
        env=clean_env(BATON_DATABASE_URL=migrated_database),
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"org_id", "project_id", "token"}

    async with session_factory() as session:
        principal = await accounts.authenticate(session=session, token=created["token"])
    assert principal.org_id == created["org_id"]
    assert principal.role is Role.owner and principal.project_id is None


def test_the_data_dir_comes_from_the_environment_too(tmp_path: Path):
    """With no database URL configured, the SQLite file lands in BATON_DATA_DIR."""
    data_dir = tmp_path / "from-env"
    result = baton("admin", "bootstrap", "--json", env=clean_env(BATON_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    assert (data_dir / "baton.db").exists()
    second = baton("admin", "bootstrap", "--json", env=clean_env(BATON_DATA_DIR=str(data_dir)))
    assert json.loads(second.stdout)["org_id"] == json.loads(result.stdout)["org_id"] + 1


def test_db_upgrade_migrates_an_empty_data_dir(tmp_path: Path):
    result = baton("db", "upgrade", "--data-dir", str(tmp_path), env=clean_env())
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "baton.db").exists()


async def test_baton_up_runs_a_task_end_to_end_and_keeps_data_across_restarts(tmp_path: Path):
    data_dir = tmp_path / "data"
    stack = RunningStack(data_dir, tmp_path / "first.log")
    try:
        stack.wait_until_running()
        assert "First start" in stack.output
        assert "an owner token" in stack.output
        # Not the default ports: the commands printed are the ones that work with these.
        assert f"temporal workflow list --address 127.0.0.1:{stack.temporal_port}" in stack.output
        assert f"BATON_API_URL=http://127.0.0.1:{stack.api_port} " in stack.output
        # No key was configured: a random one was made for this data dir, readable by us only.
        assert "Created a random secret key" in stack.output
        assert stat.S_IMODE(key_file(data_dir).stat().st_mode) == 0o600
        first_key = read_keys(key_file(data_dir))
        token, project_id = stack.value("BATON_TOKEN"), stack.value("BATON_PROJECT_ID")
        base = f"http://127.0.0.1:{stack.api_port}"
        headers = {"Authorization": f"Token {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            assert (await client.get("/docs")).status_code == 200
            agent = await client.post(
                f"/api/v1/projects/{project_id}/agents",
                json={"name": "Echo", "system_prompt": "Be brief.", "model": "scripted:echo"},
            )
            task = await client.post(
                f"/api/v1/projects/{project_id}/agents/{agent.json()['id']}/tasks",
                json={"message": "ping"},
            )
            assert task.status_code == 201, task.text
            task_url = f"/api/v1/projects/{project_id}/tasks/{task.json()['id']}"
            async with asyncio.timeout(60):
                while (await client.get(task_url)).json()["status"] != "completed":
                    await asyncio.sleep(0.2)

        listed = subprocess.run(
            [
                venv_binary("temporal"),
                "workflow",
                "list",
                "--address",
                f"127.0.0.1:{stack.temporal_port}",
                "--query",
                f"BatonProject='{project_id}'",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert task.json()["workflow_id"] in listed.stdout
        ui = httpx.get(f"http://127.0.0.1:{stack.ui_port}/", timeout=10)
        assert ui.status_code == 200
        # The UI decodes payloads through the API's codec server, and so does the CLI.
        ui_settings = httpx.get(f"http://127.0.0.1:{stack.ui_port}/api/v1/settings", timeout=10)
        codec = f"http://localhost:{stack.api_port}/api/temporal-codec"
        assert ui_settings.json()["Codec"]["Endpoint"] == codec
        assert f"{codec}/sign-in" in stack.output
        show = [
            venv_binary("temporal"),
            "workflow",
            "show",
            "--address",
            f"127.0.0.1:{stack.temporal_port}",
            "--workflow-id",
            task.json()["workflow_id"],
            "--detailed",
        ]
        codec_flags = ["--codec-endpoint", f"{base}/api/temporal-codec", "--codec-auth"]
        shown = [
            subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
            for command in (show, [*show, *codec_flags, f"Token {token}"])
        ]
        assert "You said: ping" not in shown[0] and "message: ping" not in shown[0]
        assert "You said: ping" in shown[1] and "input[0].message: ping" in shown[1]

        assert stack.interrupt() == 0
        for port in (stack.api_port, stack.temporal_port, stack.ui_port):
            assert not port_open(port), f"port {port} still open after Ctrl-C"
    finally:
        if stack.process.poll() is None:
            stack.process.kill()

    again = RunningStack(data_dir, tmp_path / "second.log")
    try:
        again.wait_until_running()
        assert "First start" not in again.output
        assert "Created a random secret key" not in again.output
        assert read_keys(key_file(data_dir)) == first_key
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{again.api_port}", headers=headers, timeout=10
        ) as client:
            kept = (await client.get(task_url)).json()
        assert kept["status"] == "completed"
        assert kept["messages"][-1]["content"].endswith("You said: ping")
        assert again.interrupt() == 0
    finally:
        if again.process.poll() is None:
            again.process.kill()


async def test_rotate_key_re_encrypts_every_stored_secret_under_a_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("BATON_SECRET_KEY")
    data_dir = tmp_path / "data"
    env = clean_env(BATON_DATA_DIR=str(data_dir))
    created = json.loads(baton("admin", "bootstrap", "--json", env=env).stdout)
    ensure_key_file(data_dir)
    old_key = read_keys(key_file(data_dir))[0]
    settings = Settings(data_dir=data_dir)
    engine = create_engine(settings.resolved_database_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions.begin() as session:
            box = SecretBox.from_settings(settings)
            await secret_repo.put_secret(
                session=session, box=box, project_id=created["project_id"], name="api", value="s1"
            )
            await integration_repo.create_integration(
                session=session,
                box=box,
                project_id=created["project_id"],
                spec=IntegrationSpec(name="openai", kind=IntegrationKind.openai),
                key="sk-live-1",
            )

        result = baton("admin", "rotate-key", env=env)
        assert result.returncode == 0, result.stderr
        assert "Re-encrypted 1 project secrets and 1 integration keys" in result.stdout

        keys = read_keys(key_file(data_dir))
        assert len(keys) == 2 and keys[1] == old_key and keys[0] != old_key
        assert stat.S_IMODE(key_file(data_dir).stat().st_mode) == 0o600
        new_only, old_only = SecretBox(keys[0]), SecretBox(old_key)
        async with sessions() as session:
            revealed = await secret_repo.reveal_secrets(
                session=session, box=new_only, project_id=created["project_id"]
            )
            row = await integration_repo.get_integration(
                session=session, project_id=created["project_id"], ref="openai"
            )
            secrets = await secret_repo.list_secrets(
                session=session, project_id=created["project_id"]
            )
            stored = secrets.items[0].ciphertext
        assert revealed == {"api": "s1"}
        assert (
            integration_repo.reveal(box=new_only, row=row).api_key.get_secret_value() == "sk-live-1"
        )
        with pytest.raises(ValueError, match="cannot be decrypted"):
            old_only.decrypt(stored)
    finally:
        await engine.dispose()


def stack_processes(data_dir: Path) -> list[int]:
    """Live processes of a stack on `data_dir`: its temporal server names the data dir in
    its arguments, the worker and API in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if str(data_dir) in (entry / "cmdline").read_text() or (
                f"BATON_DATA_DIR={data_dir}".encode() in (entry / "environ").read_bytes()
            ):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ctrl_c_on_baton_up_piped_to_tee_stops_all_three_processes(tmp_path: Path):
    """A terminal's Ctrl-C signals the whole foreground group: `tee` dies with `baton up`, so
    the goodbye it prints goes to a closed pipe; the stack must still stop."""
    data_dir = tmp_path / "data"
    ports = [free_port(), free_port(), free_port()]
    command = (
        f"{sys.executable} -m baton up --data-dir {data_dir} --api-port {ports[0]} "
        f"--temporal-port {ports[1]} --ui-port {ports[2]} 2>&1 | tee {tmp_path / 'log'}"
    )
    # A session of its own, as a terminal's job is a process group of its own.
    shell = subprocess.Popen(["bash", "-c", command], env=clean_env(), start_new_session=True)
    log = tmp_path / "log"
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "Baton is running" in log.read_text()):
            assert shell.poll() is None, log.read_text() if log.exists() else "no output"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert len(stack_processes(data_dir)) >= 3

        os.killpg(shell.pid, signal.SIGINT)
        shell.wait(timeout=30)
        deadline = time.monotonic() + 30
        while left := stack_processes(data_dir):
            assert time.monotonic() < deadline, f"still running after Ctrl-C: {left}"
            time.sleep(0.2)
        for port in ports:
            assert not port_open(port), f"port {port} still open after Ctrl-C"
    finally:
        for pid in stack_processes(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_baton_up_names_a_port_in_use_before_starting_anything(tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = baton("up", "--data-dir", str(tmp_path), "--ui-port", str(taken), env=clean_env())
    assert result.returncode == 1
    assert f"port {taken} (the Temporal UI, --ui-port) is already in use" in result.stderr
    # Nothing was started or created.
    assert not (tmp_path / "baton.db").exists()
