"""The `baton` command: `up` runs everything on one machine; `worker`, `api` and `db upgrade`
run one part each, as at scale; `admin bootstrap` creates an organisation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer

from baton import terminal
from baton.db import migrate
from baton.db.engine import create_engine, create_session_factory
from baton.db.repositories import accounts
from baton.examples import create_example_agent
from baton.logs import configure_logging
from baton.secret_key import ensure_key_file, key_file, new_key, read_keys, write_keys
from baton.security import SecretBox
from baton.settings import Settings

if TYPE_CHECKING:
    from baton.stack import Stack

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
admin_app = typer.Typer(help="Administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="BATON_DATA_DIR",
        help="Where Baton keeps its data (default .baton)",
        show_default=False,
    ),
]


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = Settings(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def _bootstrap(
    settings: Settings, *, only_if_empty: bool, with_example: bool = False
) -> accounts.Bootstrap | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_session_factory(engine).begin() as session:
            if only_if_empty and await accounts.count_organizations(session=session) > 0:
                return None
            created = await accounts.bootstrap_organization(
                session=session, org_name="My organisation", project_name="My project"
            )
            if with_example:
                await create_example_agent(session=session, project_id=created.project.id)
            return created
    finally:
        await engine.dispose()


# `baton up`'s ports when none is given: API, Temporal's gRPC frontend, Temporal UI.
DEFAULT_PORTS = (8000, 7233, 8233)


@app.command()
def up(
    data_dir: DataDirOption = None,
    api_port: Annotated[int, typer.Option(help="Port of the HTTP API")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Port of Temporal's gRPC frontend")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Port of the Temporal Web UI")] = 8233,
) -> None:
    """Run the whole platform on this machine: Temporal dev server, worker and API."""
    from baton.stack import Stack, ports_in_use

    configure_logging()
    taken = ports_in_use(
        [
            ("the API", "--api-port", api_port),
            ("Temporal's gRPC frontend", "--temporal-port", temporal_port),
            ("the Temporal UI", "--ui-port", ui_port),
        ]
    )
    if taken:
        typer.echo(
            "baton up: " + "; ".join(taken) + ". Stop what holds it (another `baton up`?) "
            "or choose other ports.",
            err=True,
        )
        raise typer.Exit(1)
    overrides: dict[str, Any] = {
        "api_port": api_port,
        "temporal_address": f"127.0.0.1:{temporal_port}",
        "temporal_ui_url": f"http://localhost:{ui_port}",
    }
    settings = _settings(data_dir, **overrides)
    if settings.secret_key is None:
        ensure_key_file(settings.data_dir)
        typer.echo(
            f"Created a random secret key in {key_file(settings.data_dir)} (mode 0600). It "
            "encrypts stored secrets and Temporal payloads: back it up with the data dir."
        )
        settings = _settings(data_dir, **overrides)
    migrate.upgrade(settings.resolved_database_url)
    first_start = asyncio.run(_bootstrap(settings, only_if_empty=True, with_example=True))

    stack = Stack(settings, temporal_port=temporal_port, ui_port=ui_port)
    # Whatever ends this (Ctrl-C while starting, a child's death, the pipe to `tee` closing
    # under a print), the children are stopped.
    try:
        code = _run_stack(stack, settings, first_start)
    except KeyboardInterrupt:
        code = 0
    finally:
        stack.stop()
    raise typer.Exit(code)


def _run_stack(stack: Stack, settings: Settings, first_start: accounts.Bootstrap | None) -> int:
    from baton.stack import StackError

    try:
        stack.start()
    except StackError as exc:
        _say(f"baton up failed: {exc}", err=True)
        return 1

    lines = [
        "",
        "Baton is running. Ctrl-C stops it.",
        f"  Console      {settings.public_api_url}/   (sign in with an API token)",
        f"  API          {settings.public_api_url}   (OpenAPI: {settings.public_api_url}/docs)",
        f"  Temporal UI  {settings.temporal_ui_url}   (to read payloads, sign in at "
        f"{settings.temporal_codec_endpoint}/sign-in)",
        f"  Data         {settings.data_dir.resolve()}",
    ]
    if first_start is not None:
        lines += [
            "",
            "First start: created an organisation, a project and an owner token.",
            "The token is shown only this once; keep it somewhere safe.",
            f"  BATON_ORG_ID={first_start.org.id}",
            f"  BATON_PROJECT_ID={first_start.project.id}",
            f"  BATON_TOKEN={first_start.token}",
            "An example agent, 'Support demo' (offline scripted model), is in the project:",
            f"  GET {settings.public_api_url}/api/v1/projects/{first_start.project.id}/agents",
        ]
    if (settings.api_port, stack.temporal_port, stack.ui_port) != DEFAULT_PORTS:
        lines += [
            "",
            "Not the default ports, so other commands need to be told where Baton is:",
            f"  .venv/bin/temporal workflow list --address 127.0.0.1:{stack.temporal_port}",
            f"  BATON_API_URL={settings.public_api_url} .venv/bin/baton chat AGENT_ID",
        ]
    _say("\n".join(lines) + "\n")
    code = stack.wait()
    _say("Stopping Baton...")
    return code


def _say(text: str, *, err: bool = False) -> None:
    """Prints, unless whoever read our output (`| tee`) is gone: that must not stop the
    shutdown."""
    with contextlib.suppress(BrokenPipeError, OSError):
        typer.echo(text, err=err)


@app.command()
def worker(data_dir: DataDirOption = None) -> None:
    """Run one worker process against the configured Temporal and database."""
    import worker as worker_process

    configure_logging()
    asyncio.run(worker_process.run(_settings(data_dir)))


@app.command()
def api(
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Serve the HTTP API with uvicorn."""
    import uvicorn

    from api.app import create_app

    configure_logging()
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    settings = _settings(data_dir, **overrides)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
    )


@app.command()
def chat(
    agent_id: Annotated[str, typer.Argument(help="The agent to talk to")],
    api_url: Annotated[str, typer.Option(envvar="BATON_API_URL")] = "http://127.0.0.1:8000",
    token: Annotated[str, typer.Option(envvar="BATON_TOKEN", help="An API token")] = "",
    project_id: Annotated[str, typer.Option(envvar="BATON_PROJECT_ID")] = "",
    param: Annotated[
        list[str] | None,
        typer.Option(help="An agent param, name=value (a JSON value, or else text); repeatable"),
    ] = None,
) -> None:
    """Chat with an agent in the terminal: tokens stream, approvals ask y/n, /exit leaves."""
    from baton.chat import Chat, ChatError, parse_params
    from baton.client import DEFAULT_API_URL, ApiError, saved_credentials

    if not token or not project_id:
        try:
            saved = saved_credentials()
        except ApiError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        token = token or saved.get("token", "")
        project_id = project_id or saved.get("project_id", "")
        if api_url == DEFAULT_API_URL:
            api_url = saved.get("api_url", api_url)
    if not token or not project_id:
        typer.echo(
            "set BATON_TOKEN and BATON_PROJECT_ID (or --token, --project-id), or run `baton login`",
            err=True,
        )
        raise typer.Exit(2)
    try:
        params = parse_params(param or [])
    except ChatError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    session = Chat(
        api_url=api_url,
        token=token,
        project_id=project_id,
        agent_id=agent_id,
        ask=input,
        out=sys.stdout,
        params=params,
    )
    try:
        code = session.run()
    except (ChatError, httpx.HTTPError) as exc:
        typer.echo(f"chat failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade(
    data_dir: DataDirOption = None,
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply database migrations."""
    settings = _settings(data_dir)
    migrate.upgrade(settings.resolved_database_url, revision)
    typer.echo(f"database at revision {revision}")


@admin_app.command("bootstrap")
def admin_bootstrap(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create a new organisation with a project and an owner token (shown once)."""
    settings = _settings(data_dir)
    migrate.upgrade(settings.resolved_database_url)
    created = asyncio.run(_bootstrap(settings, only_if_empty=False))
    assert created is not None
    if as_json:
        typer.echo(
            json.dumps(
                {"org_id": created.org.id, "project_id": created.project.id, "token": created.token}
            )
        )
    else:
        typer.echo(
            f"organisation {created.org.id}\nproject {created.project.id}\ntoken {created.token}"
        )


@admin_app.command("rotate-key")
def admin_rotate_key(data_dir: DataDirOption = None) -> None:
    """Re-encrypt every stored secret and integration key under a new secret key.

    With the data dir's key file (as `baton up` makes it), a new random key becomes current
    and the old one stays in the file to decrypt older Temporal payloads. With
    BATON_SECRET_KEY set, move its old value to BATON_PREVIOUS_SECRET_KEYS and set a new one
    first: this then re-encrypts everything under it. Stop the API and workers before, and
    start them after, so none of them holds the old key alone."""
    settings = _settings(data_dir)
    path = key_file(settings.data_dir)
    keys = read_keys(path)
    from_file = bool(keys) and keys[0] == settings.require_secret_key()
    if from_file:
        write_keys(path, [new_key(), *keys])
        settings = _settings(data_dir)
    counts = asyncio.run(_reencrypt(settings))
    typer.echo(
        f"Re-encrypted {counts[0]} project secrets and {counts[1]} integration keys under "
        + (f"a new key in {path}" if from_file else "BATON_SECRET_KEY")
        + ". Start the API and workers again so they use it."
    )


@admin_app.command("plan")
def admin_plan(
    plan: Annotated[str, typer.Argument(help="free, pro, team, enterprise, or a plans file's")],
    org: Annotated[int, typer.Option("--org", help="The organisation's id")],
    data_dir: DataDirOption = None,
) -> None:
    """Put an organisation on a plan: its monthly actions and vendor credits."""
    credits = _credits_command(_settings(data_dir), org, plan=plan)
    typer.echo(f"organisation {org} is on plan {credits['plan']}")
    typer.echo(json.dumps(credits, indent=2))
    _leave_without_teardown()


@admin_app.command("grant")
def admin_grant(
    org: Annotated[int, typer.Option("--org", help="The organisation's id")],
    actions: Annotated[int, typer.Option("--actions", min=0)] = 0,
    vendor_credits: Annotated[float, typer.Option("--vendor-credits", min=0)] = 0,
    data_dir: DataDirOption = None,
) -> None:
    """Grant an organisation actions and vendor credits on top of its plan (they roll over
    from month to month)."""
    if not actions and not vendor_credits:
        _say("nothing to grant: give --actions and/or --vendor-credits", err=True)
        raise typer.Exit(2)
    credits = _credits_command(
        _settings(data_dir), org, grants={"actions": actions, "vendor_credits": vendor_credits}
    )
    typer.echo(json.dumps(credits, indent=2))
    _leave_without_teardown()


def _leave_without_teardown() -> None:
    """Ends a one-shot command that used a Temporal client once all it says is flushed. The
    client's native threads can outlive the interpreter's teardown and abort the process
    (temporalio/sdk-python#300: "PyGILState_Release ... finalizing", exit status -6) after
    the work was done and said; skipping the teardown leaves nothing undone here: the
    database engine is disposed and the output flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _credits_command(
    settings: Settings,
    org_id: int,
    *,
    plan: str | None = None,
    grants: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Sets the plan and makes the grants, each audited as the operator's, then returns the
    organisation's credits; an unknown organisation or plan ends the command with its
    message."""
    import uuid

    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    from baton.db.repositories import audit
    from baton.db.repositories import credits as credit_repo
    from baton.db.tables import Project
    from baton.domain.audit import OPERATOR, AuditAction, Target
    from baton.domain.credits import Currency
    from baton.errors import BatonError
    from baton.services.credits import plan_book

    async def record(session: AsyncSession, action: AuditAction, detail: dict[str, Any]) -> None:
        await audit.record(
            session=session,
            org_id=org_id,
            project_id=None,
            actor=OPERATOR,
            action=action,
            target=Target("organization", str(org_id)),
            detail=detail,
        )

    async def run() -> dict[str, Any]:
        plans = plan_book(settings)
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_session_factory(engine).begin() as session:
                if plan is not None:
                    await credit_repo.set_plan(
                        session=session, plans=plans, org_id=org_id, plan=plan
                    )
                    await record(session, AuditAction.plan_set, {"plan": plan})
                for currency, amount in (grants or {}).items():
                    if amount:
                        await credit_repo.grant(
                            session=session,
                            org_id=org_id,
                            currency=Currency(currency),
                            amount=amount,
                            key=f"grant:{uuid.uuid4()}",
                            note="baton admin grant",
                        )
                        detail = {"currency": currency, "amount": amount}
                        await record(session, AuditAction.credits_granted, detail)
                credits = await credit_repo.credits_of(
                    session=session,
                    plans=plans,
                    org_id=org_id,
                    box=SecretBox.from_settings(settings),
                )
                projects = await session.scalars(select(Project.id).where(Project.org_id == org_id))
                project_ids = list(projects)
        finally:
            await engine.dispose()
        await _wake_paused_tasks(settings, project_ids, queued=plan is not None)
        return credits.model_dump(mode="json")

    migrate.upgrade(settings.resolved_database_url)
    try:
        return asyncio.run(run())
    except BatonError as exc:
        _say(exc.message, err=True)
        raise typer.Exit(1) from exc


async def _wake_paused_tasks(settings: Settings, project_ids: list[str], *, queued: bool) -> None:
    """Tasks paused `out-of-credits` try again now, and with `queued` (a new plan, a new
    concurrency limit) tasks waiting for capacity ask again; with Temporal out of reach they
    do by themselves within CREDITS_RECHECK, or at their next re-check (said on stderr:
    stdout stays the JSON)."""
    from temporalio.service import RPCError

    from baton.domain.credits import CREDITS_RECHECK
    from baton.services.credits import wake_paused_tasks, wake_queued_tasks
    from baton.temporal import connect

    minutes = int(CREDITS_RECHECK.total_seconds() // 60)
    later = f"tasks paused out of credits resume by themselves within {minutes} minutes"
    # Reached first with a plain connection: the SDK's client can abort the process as it
    # exits after a connection it could not make.
    host, _, port = settings.temporal_address.rpartition(":")
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.close()
    except (OSError, TimeoutError, ValueError) as exc:
        _say(f"Temporal at {settings.temporal_address} was not reached ({exc}); {later}", err=True)
        return
    try:
        async with asyncio.timeout(30):
            client = await connect(settings)
            told = await wake_paused_tasks(client, project_ids)
            asked = await wake_queued_tasks(client, project_ids) if queued else 0
    except (RuntimeError, TimeoutError, RPCError) as exc:
        _say(f"paused tasks were not told ({exc}); {later}", err=True)
        return
    if told:
        _say(f"{told} paused task(s) told to resume", err=True)
    if asked:
        _say(f"{asked} queued task(s) told to ask for capacity", err=True)


async def _reencrypt(settings: Settings) -> tuple[int, int]:
    from baton.db.repositories import integrations, secrets

    box = SecretBox.from_settings(settings)
    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_session_factory(engine).begin() as session:
            return (
                await secrets.reencrypt_secrets(session=session, box=box),
                await integrations.reencrypt_keys(session=session, box=box),
            )
    finally:
        await engine.dispose()


# The commands over the HTTP API (`login`, `task`, `tool`, `knowledge`, `enrich`) come after
# the ones above in `baton --help`.
terminal.register(app)
