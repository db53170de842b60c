"""The terminal commands (`baton login`, `task`, `tool`, `knowledge`, `enrich`) against the
real API over HTTP and a real worker, run in process as a shell would run them."""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker
from typer.testing import CliRunner

from baton import client as client_module
from baton.cli import app
from baton.examples import create_example_agent
from tests.support import Tenant


class Baton:
    """`baton ...` with BATON_* set (or unset) in the environment and a config dir of its own."""

    def __init__(self, api_url: str, tenant: Tenant, config_dir: Path) -> None:
        self.env: dict[str, str | None] = {
            "BATON_API_URL": api_url,
            "BATON_TOKEN": tenant.token,
            "BATON_PROJECT_ID": tenant.project_id,
            "XDG_CONFIG_HOME": str(config_dir),
            "COLUMNS": "250",
        }

    async def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        runner = CliRunner()
        environment = {**self.env, **env}
        return await asyncio.wait_for(
            asyncio.to_thread(runner.invoke, app, list(args), input=input, env=environment),
            timeout=60,
        )


@pytest.fixture
def baton(live_api: str, tenant: Tenant, tmp_path: Path) -> Baton:
    return Baton(live_api, tenant, tmp_path / "config")


async def post(live_api: str, tenant: Tenant, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=live_api, headers=tenant.headers) as api:
        response = await api.post(tenant.url(path), json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_login_saves_a_private_file_the_commands_use_and_logout_removes_it(
    baton: Baton, live_api: str, tenant: Tenant, tmp_path: Path
):
    no_env = {"BATON_API_URL": None, "BATON_TOKEN": None, "BATON_PROJECT_ID": None}
    refused = await baton("task", "list", **no_env)
    assert refused.exit_code == 1
    assert "run `baton login`" in refused.stderr

    wrong = await baton(
        "login", "--token", "not-a-token", "--project-id", tenant.project_id,
        "--api-url", live_api, **no_env,
    )  # fmt: skip
    assert wrong.exit_code == 1 and wrong.stderr.startswith("login failed: 401")
    saved = tmp_path / "config" / "baton" / "credentials.json"
    assert not saved.exists()

    logged_in = await baton(
        "login", "--token", tenant.token, "--project-id", tenant.project_id,
        "--api-url", live_api, **no_env,
    )  # fmt: skip
    assert logged_in.exit_code == 0, logged_in.output
    assert tenant.token not in logged_in.output
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["token"] == tenant.token

    listed = await baton("task", "list", "--json", **no_env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
    agent = await post(live_api, tenant, "/agents", {"name": "Quiet", "model": "scripted:echo"})
    chatted = await baton("chat", agent["id"], input="\n", **no_env)  # `baton chat` too
    assert chatted.exit_code == 0, chatted.output
    assert chatted.stdout.startswith("Chatting with Quiet (scripted:echo).")

    out = await baton("logout", **no_env)
    assert out.exit_code == 0 and not saved.exists()
    assert (await baton("task", "list", **no_env)).exit_code == 1


async def test_task_run_streams_the_answer_stops_for_an_approval_and_approve_decides(
    baton: Baton,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    async with session_factory.begin() as session:
        agent = await create_example_agent(session=session, project_id=tenant.project_id)
    message = (
        'call look_up_order {"order": "A-17"}\n'
        'call send_email {"to": "ada@example.com", "body": "It ships"}'
    )
    ran = await baton("task", "run", agent.id, message)
    assert ran.exit_code == 0, ran.output
    assert "Calling look_up_order, send_email." in ran.stdout
    waiting = re.search(r"waits for approval: baton task approve (\S+) (\S+)", ran.stdout)
    assert waiting, ran.stdout
    assert ran.stdout.rstrip().endswith("[waiting-approval]")
    task_id, call_id = waiting.groups()

    shown = await baton("task", "show", task_id)
    assert "waiting-approval" in shown.stdout
    assert f"call {call_id}" in shown.stdout

    rejected = await baton("task", "approve", task_id, call_id, "--reject", "not today")
    assert rejected.exit_code == 0, rejected.output
    assert rejected.stdout.strip() == f"{call_id} rejected"
    for _ in range(100):
        after = json.loads((await baton("task", "show", task_id, "--json")).stdout)
        if after["status"] == "idle":
            break
        await asyncio.sleep(0.1)
    shown = await baton("task", "show", task_id)
    assert "idle" in shown.stdout and "waiting:" not in shown.stdout
    assert "tool> The user rejected this call: not today." in shown.stdout
    assert "tool> Order A-17: shipped" in shown.stdout

    again = await baton("task", "approve", task_id, call_id)
    assert again.exit_code == 1
    assert again.stderr.startswith("error: 404 not_found: no tool call")
    assert len(again.stderr.strip().splitlines()) == 1


async def test_task_run_wait_follows_to_the_end_and_list_pages_through_every_task(
    baton: Baton,
    live_api: str,
    tenant: Tenant,
    worker: Worker,
    monkeypatch: pytest.MonkeyPatch,
):
    agent = await post(
        live_api,
        tenant,
        "/agents",
        {
            "name": "Echo",
            "model": "scripted:echo",
            "idle_timeout_seconds": 1,
            "params": [{"name": "region", "type": "text", "required": True}],
        },
    )
    missing = await baton("task", "run", agent["id"], "hi")
    assert missing.exit_code == 1 and "region" in missing.stderr

    ran = await baton("task", "run", agent["id"], "hello there", "--param", "region=eu", "--wait")
    assert ran.exit_code == 0, ran.output
    assert "You said: hello there" in ran.stdout
    # Idle, then over when its idle timeout passed: --wait followed it to the end.
    assert ran.stdout.rstrip().endswith("[completed]")
    task_id = ran.stdout.split()[1]

    shown = json.loads((await baton("task", "show", task_id, "--json")).stdout)
    assert shown["params"] == {"region": "eu"} and shown["status"] == "completed"

    for text in ("two", "three"):
        assert (
            await baton("task", "run", agent["id"], text, "--param", "region=eu")
        ).exit_code == 0
    monkeypatch.setattr(client_module, "PAGE_SIZE", 1)  # three pages of one
    listed = json.loads((await baton("task", "list", "--json")).stdout)
    assert len(listed) == 3 and listed[-1]["id"] == task_id
    table = (await baton("task", "list", "--limit", "2")).stdout
    assert task_id not in table and listed[0]["id"] in table


async def test_tools_import_run_and_export(baton: Baton, tmp_path: Path, worker: Worker):
    definition = tmp_path / "greet.yaml"
    definition.write_text(
        "name: Greet\n"
        "params:\n  - name: who\n"
        "steps:\n"
        "  - name: hello\n    type: template\n    template: 'Hello {{ params.who }}!'\n"
    )
    imported = await baton("tool", "import", str(definition), "--json")
    assert imported.exit_code == 0, imported.output
    tool_id = json.loads(imported.stdout)["id"]

    ran = await baton("tool", "run", tool_id, "--param", "who=Ada")
    assert ran.exit_code == 0, ran.output
    assert ran.stdout.strip().endswith("Hello Ada!")

    exported = await baton("tool", "export", tool_id, "--format", "yaml")
    assert exported.exit_code == 0
    assert "name: Greet" in exported.stdout and "Hello {{ params.who }}!" in exported.stdout
    copy = tmp_path / "copy.yaml"
    copy.write_text(exported.stdout)
    again = json.loads((await baton("tool", "import", str(copy), "--json")).stdout)
    assert again["id"] != tool_id and again["name"] == "Greet"
    listed = (await baton("tool", "list")).stdout
    assert tool_id in listed and again["id"] in listed

    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "No steps", "steps": "none"}')
    refused = await baton("tool", "import", str(broken))
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: 422")


async def test_knowledge_import_search_and_enrich(
    baton: Baton, live_api: str, tenant: Tenant, tmp_path: Path, worker: Worker
):
    knowledge_set = await post(
        live_api,
        tenant,
        "/knowledge/sets",
        {
            "name": "Books",
            "columns": [
                {"name": "title", "type": "text"},
                {"name": "author", "type": "text"},
                {"name": "blurb", "type": "text"},
                {"name": "blurb_error", "type": "text"},
            ],
        },
    )
    set_id = knowledge_set["id"]
    rows = tmp_path / "books.csv"
    rows.write_text("title,author\nDune,Frank Herbert\nEmma,Jane Austen\nUlysses,James Joyce\n")
    imported = await baton("knowledge", "import", set_id, str(rows))
    assert imported.exit_code == 0, imported.output
    assert "imported 3 rows into Books" in imported.stdout
    size = rows.stat().st_size
    assert "upload books.csv" in imported.stderr and f"{size}/{size} bytes" in imported.stderr

    found = json.loads((await baton("knowledge", "search", set_id, "Austen", "--json")).stdout)
    assert found[0]["row"]["title"] == "Emma"
    table = (await baton("knowledge", "search", set_id, "Herbert")).stdout
    assert "Dune" in table and "score" in table

    tool = await post(
        live_api,
        tenant,
        "/tools",
        {
            "name": "Blurb",
            "params": [{"name": "title"}, {"name": "by"}],
            "steps": [
                {
                    "name": "b",
                    "type": "template",
                    "template": "{{ params.title }}, by {{ params.by }}",
                }
            ],
        },
    )
    enriched = await baton(
        "enrich", set_id, "--tool", tool["id"], "--map", "blurb=@",
        "--input", "title=title", "--input", "by={{ row.author | upper }}",
    )  # fmt: skip
    assert enriched.exit_code == 0, enriched.output
    assert re.search(r"enrich .* 3/3 100% 0 failed [\d.]+ rows/s", enriched.stderr)
    assert "enrichment succeeded: 3 done, 0 failed of 3" in enriched.stdout
    blurbs = json.loads((await baton("knowledge", "search", set_id, "AUSTEN", "--json")).stdout)
    assert blurbs[0]["row"]["blurb"] == "Emma, by JANE AUSTEN"

    bad = await baton("enrich", set_id, "--tool", "no-such-tool", "--map", "blurb=@")
    assert bad.exit_code == 1
    assert "no tool 'no-such-tool'" in bad.stderr


async def test_knowledge_import_follows_the_embedding_of_the_new_rows(
    baton: Baton, live_api: str, tenant: Tenant, tmp_path: Path, worker: Worker
):
    knowledge_set = await post(
        live_api,
        tenant,
        "/knowledge/sets",
        {
            "name": "Facts",
            "columns": [{"name": "fact", "type": "text"}],
            "embedding": {"provider": "local"},
        },
    )
    rows = tmp_path / "facts.jsonl"
    rows.write_text('{"fact": "Bicycles need oil"}\n{"fact": "Cats sleep a lot"}\n')
    imported = await baton("knowledge", "import", knowledge_set["id"], str(rows), "--json")
    assert imported.exit_code == 0, imported.output
    result = json.loads(imported.stdout)
    assert result["import"]["done"] == 2
    assert result["embedding"]["status"] == "succeeded" and result["embedding"]["done"] == 2
    assert "embedding" in imported.stderr and "2/2" in imported.stderr
    found = await baton("knowledge", "search", knowledge_set["id"], "lubricant", "--mode", "vector")
    assert "Bicycles need oil" in found.stdout.splitlines()[3]
