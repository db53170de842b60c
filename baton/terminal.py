"""The terminal commands over the HTTP API: `login`/`logout`, `task`, `tool`, `knowledge` and
`enrich`. Tables for lists, progress bars for jobs, `--json` for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from baton.client import (
    DEFAULT_API_URL,
    ApiError,
    Client,
    Credentials,
    credentials_file,
    load_credentials,
    save_credentials,
)

TASK_FINAL = {"completed", "failed", "cancelled", "timed-out", "out-of-credits"}
JOB_FINAL = {"succeeded", "failed", "cancelled"}
POLL_SECONDS = 0.5
# How long `knowledge import` waits for the embedding job of the new rows to be recorded.
EMBED_JOB_WAIT_SECONDS = 30

task_app = typer.Typer(help="Start, follow and answer agent tasks.", no_args_is_help=True)
tool_app = typer.Typer(help="Run, import and export tools.", no_args_is_help=True)
knowledge_app = typer.Typer(help="Import into and search knowledge sets.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", help="name=value (a JSON value, or else text); repeatable"),
]

T = TypeVar("T")


def out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def connected() -> Iterator[Client]:
    """A client from the environment or the saved login; an API error ends the command with
    its one line on stderr and exit code 1."""
    try:
        with Client(load_credentials()) as client:
            yield client
    except ApiError as exc:
        err().print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        err().print("\ninterrupted", markup=False)
        raise typer.Exit(130) from None


def params_of(pairs: list[str] | None) -> dict[str, Any]:
    from baton.chat import ChatError, parse_params

    try:
        return parse_params(pairs or [])
    except ChatError as exc:
        err().print(str(exc), markup=False)
        raise typer.Exit(2) from exc


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> Table:
    shown = Table(*columns, title=title)
    for row in rows:
        shown.add_row(*("" if cell is None else str(cell) for cell in row))
    return shown


def poll(fetch: Callable[[], T], done: Callable[[T], bool]) -> T:
    while not done(value := fetch()):
        time.sleep(POLL_SECONDS)
    return value


# ---------------------------------------------------------------------------------------------
# login / logout


def login(
    token: Annotated[str, typer.Option(prompt=True, hide_input=True, help="An API token")],
    project_id: Annotated[str, typer.Option(prompt="Project id")],
    api_url: Annotated[
        str, typer.Option(envvar="BATON_API_URL", help="Where the API is")
    ] = DEFAULT_API_URL,
) -> None:
    """Check a token against the API and save it for the other commands.

    The token, project and API URL go to a file only you can read; the environment's BATON_*
    still win over it."""
    credentials = Credentials(api_url=api_url.rstrip("/"), token=token, project_id=project_id)
    try:
        with Client(credentials) as client:
            project = client.request("GET", "").json()
    except ApiError as exc:
        err().print(f"login failed: {exc}", markup=False)
        raise typer.Exit(1) from exc
    path = save_credentials(credentials)
    name = project.get("name", project_id) if isinstance(project, dict) else project_id
    out().print(f"Logged in to {name} ({project_id}) at {credentials.api_url}; saved in {path}")


def logout() -> None:
    """Forget what `baton login` saved."""
    path = credentials_file()
    if path.exists():
        path.unlink()
        out().print(f"Removed {path}")
    else:
        out().print("Not logged in")


# ---------------------------------------------------------------------------------------------
# task


@task_app.command("run")
def task_run(
    agent_id: Annotated[str, typer.Argument(help="The agent")],
    message: Annotated[str, typer.Argument(help="The first message")],
    param: ParamOption = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow until the task ends, not only until its first answer"),
    ] = False,
) -> None:
    """Start a task and stream it.

    Follows it until the agent answers or asks for an approval, or with --wait until the task
    ends. Exits 1 if it failed."""
    body: dict[str, Any] = {"message": message}
    if param:
        body["params"] = params_of(param)
    console = out()
    with connected() as client:
        started = client.post(f"/agents/{agent_id}/tasks", body)
        task_id = started["id"]
        console.print(f"task {task_id}  ({started['temporal_ui_url']})", markup=False)
        try:
            status = follow(client, task_id, console, until_final=wait)
        except KeyboardInterrupt:
            err().print(f"\nstopped following; the task goes on: baton task show {task_id}")
            raise typer.Exit(130) from None
    console.print(f"[{status}]", markup=False)
    if status in TASK_FINAL - {"completed"}:
        raise typer.Exit(1)


def follow(client: Client, task_id: str, console: Console, *, until_final: bool) -> str:
    """Streams a task's events; returns its status when it stops for us."""
    seq = 0
    while True:
        for event in client.events(task_id, seq):
            seq = max(seq, int(event["seq"]))
            kind, data = event["type"], event["data"]
            if kind == "message.delta":
                console.out(data.get("text", ""), end="")
            elif kind == "message.completed" and data.get("role") == "assistant":
                console.out("")
            elif kind == "tool.run.completed":
                console.print(f"  [{data['tool']} done]", markup=False)
            elif kind == "tool.run.failed":
                console.print(f"  [{data['tool']} failed: {data.get('error', '')}]", markup=False)
            elif kind == "tool.approval.requested":
                arguments = json.dumps(data.get("arguments", {}))
                console.print(
                    f"  {data['tool']}({arguments}) waits for approval: "
                    f"baton task approve {task_id} {data['call_id']} [--reject REASON]",
                    markup=False,
                )
            elif kind == "task.status":
                status = str(data["status"])
                if status in TASK_FINAL:
                    return status
                if not until_final and status in ("idle", "waiting-approval"):
                    return status


@task_app.command("list")
def task_list(
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks")] = None,
    status: Annotated[str | None, typer.Option(help="Only tasks with this status")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The project's tasks, newest first."""
    with connected() as client:
        tasks = list(client.items("/tasks", limit=limit, agent_id=agent, status=status))
    if as_json:
        print_json(tasks)
        return
    rows = [[t["id"], t["agent_id"], t["status"], t["created_at"]] for t in tasks]
    out().print(table(["id", "agent", "status", "created"], rows))


@task_app.command("show")
def task_show(task_id: str, as_json: JsonOption = False) -> None:
    """A task: its status, messages and the tool calls waiting for approval."""
    with connected() as client:
        task = client.get(f"/tasks/{task_id}")
    if as_json:
        print_json(task)
        return
    console = out()
    console.print(f"task {task['id']}  agent {task['agent_id']}  {task['status']}", markup=False)
    if task.get("error"):
        console.print(f"error: {task['error']}", markup=False)
    for message in task["messages"]:
        content = message.get("content") or ""
        calls = message.get("tool_calls") or []
        names = ", ".join(str(c.get("name", c.get("tool", ""))) for c in calls)
        console.print(
            f"{message['role']}> {content}" + (f" [calls {names}]" if names else ""), markup=False
        )
    for pending in task.get("pending_approvals", []):
        console.print(
            f"waiting: {pending['tool']}({json.dumps(pending.get('arguments', {}))}) "
            f"call {pending['call_id']}",
            markup=False,
        )
    usage = task.get("usage", {})
    console.print(
        f"tokens: {usage.get('input_tokens', 0)} in, {usage.get('output_tokens', 0)} out",
        markup=False,
    )


@task_app.command("approve")
def task_approve(
    task_id: str,
    call_id: Annotated[str, typer.Argument(help="The waiting tool call's id")],
    reject: Annotated[
        str | None, typer.Option(help="Reject the call instead; the model is told why")
    ] = None,
) -> None:
    """Approve a tool call waiting for approval, or --reject it with a reason."""
    body = {"approve": reject is None, "reason": reject or ""}
    with connected() as client:
        answer = client.post(f"/tasks/{task_id}/approvals/{call_id}", body)
    out().print(f"{call_id} {answer['status']}", markup=False)


# ---------------------------------------------------------------------------------------------
# tool


@tool_app.command("run")
def tool_run(
    tool_id: Annotated[str, typer.Argument(help="The tool's id")],
    param: ParamOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a tool and print its output when it finishes. Exits 1 if the run failed."""
    with connected() as client:
        started = client.post(
            f"/tools/{tool_id}/runs", {"params": params_of(param), "wait": True, "wait_seconds": 30}
        )
        run = poll(
            lambda: client.get(f"/tool-runs/{started['id']}"), lambda r: r["status"] in JOB_FINAL
        )
    if as_json:
        print_json(run)
    else:
        console = out()
        for step in run.get("steps", []):
            console.print(f"  {step['name']} ({step['type']}): {step['status']}", markup=False)
        if run["status"] == "succeeded":
            output = run["output"]
            typer.echo(output if isinstance(output, str) else json.dumps(output, indent=2))
        else:
            err().print(f"run {run['id']} {run['status']}: {run.get('error')}", markup=False)
    if run["status"] != "succeeded":
        raise typer.Exit(1)


@tool_app.command("import")
def tool_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON or YAML")],
    as_json: JsonOption = False,
) -> None:
    """Create a tool from an exported JSON or YAML file."""
    kind = "application/yaml" if file.suffix.lower() in (".yaml", ".yml") else "application/json"
    with connected() as client:
        tool = client.request(
            "POST", "/tools/import", content=file.read_bytes(), headers={"Content-Type": kind}
        ).json()
    if as_json:
        print_json(tool)
    else:
        out().print(f"imported {tool['name']} as {tool['id']} (version {tool['version']})")


@tool_app.command("export")
def tool_export(
    tool_id: str,
    format: Annotated[str, typer.Option(help="json or yaml")] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here, not to stdout")
    ] = None,
) -> None:
    """Print (or write) a tool's definition, for `baton tool import`."""
    with connected() as client:
        text = client.request("GET", f"/tools/{tool_id}/export", params={"format": format}).text
    if format == "json":
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        err().print(f"wrote {output}", markup=False)


@tool_app.command("list")
def tool_list(as_json: JsonOption = False) -> None:
    """The project's tools."""
    with connected() as client:
        tools = list(client.items("/tools"))
    if as_json:
        print_json(tools)
        return
    rows = [[t["id"], t["name"], t["version"], t.get("description", "")] for t in tools]
    out().print(table(["id", "name", "version", "description"], rows))


# ---------------------------------------------------------------------------------------------
# knowledge and enrich


@knowledge_app.command("import")
def knowledge_import(
    set_id: Annotated[str, typer.Argument(help="The knowledge set")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, JSONL, JSON")],
    as_json: JsonOption = False,
) -> None:
    """Upload rows from a file into a knowledge set.

    A progress bar follows the upload, then the embedding of the new rows when the set has an
    embedding provider."""
    with connected() as client:
        knowledge_set = client.get(f"/knowledge/sets/{set_id}")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err(),
        ) as progress:
            bar = progress.add_task(f"upload {file.name}", total=file.stat().st_size)
            job = client.upload(
                f"/knowledge/sets/{set_id}/imports",
                file,
                advance=lambda n: progress.advance(bar, n),
            )
        embed = None
        if knowledge_set.get("embedding", {}).get("provider", "none") != "none":
            embed = follow_embedding(client, set_id, job["created_at"])
    if as_json:
        print_json({"import": job, "embedding": embed})
        return
    out().print(f"imported {job['done']} rows into {knowledge_set['name']} (job {job['id']})")
    if embed is not None:
        out().print(f"embedding {embed['status']}: {embed['done']} of {embed['total']} rows")
    elif knowledge_set.get("embedding", {}).get("provider", "none") != "none":
        out().print("no embedding job started yet; the rows get their vectors when it runs")


def follow_embedding(client: Client, set_id: str, since: str) -> dict[str, Any] | None:
    """The set's embedding job that takes the imported rows (one still running, or one that
    ran since the import), followed to its end with a bar. The job is recorded when its first
    batch starts, so it is waited for a while; None if it does not come."""
    started = datetime.fromisoformat(since)

    def taking_the_rows(job: dict[str, Any]) -> bool:
        return job["kind"] == "embed" and (
            job["status"] not in JOB_FINAL or datetime.fromisoformat(job["updated_at"]) >= started
        )

    with job_progress() as progress:
        bar = progress.add_task("embedding", total=None, failed=0, rate="")
        deadline = time.monotonic() + EMBED_JOB_WAIT_SECONDS
        while True:
            jobs = client.items(f"/knowledge/sets/{set_id}/jobs", limit=20)
            found = next((j for j in jobs if taking_the_rows(j)), None)
            if found is not None:
                break
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_SECONDS)
        job_id = found["id"]

        def fetch() -> dict[str, Any]:
            job: dict[str, Any] = client.get(f"/knowledge/jobs/{job_id}")
            progress.update(bar, completed=job["done"] + job["failed"], total=job["total"] or None)
            return job

        return poll(fetch, lambda j: j["status"] in JOB_FINAL)


def job_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err(),
    )


@knowledge_app.command("search")
def knowledge_search(
    set_id: Annotated[str, typer.Argument(help="The knowledge set")],
    query: str,
    top_k: Annotated[int, typer.Option(help="How many rows")] = 5,
    mode: Annotated[str | None, typer.Option(help="hybrid, vector or lexical")] = None,
    as_json: JsonOption = False,
) -> None:
    """The rows that best match a query, best first."""
    body: dict[str, Any] = {"query": query, "top_k": top_k}
    if mode:
        body["mode"] = mode
    with connected() as client:
        hits = client.post(f"/knowledge/sets/{set_id}/search", body)
    if as_json:
        print_json(hits)
        return
    rows = [
        [h["row_id"], f"{h['score']:.3f}", json.dumps(h["row"], ensure_ascii=False)] for h in hits
    ]
    out().print(table(["row", "score", "content"], rows))


def enrich(
    set_id: Annotated[str, typer.Argument(help="The knowledge set")],
    tool: Annotated[str, typer.Option(help="The tool's id")],
    map_: Annotated[
        list[str],
        typer.Option("--map", help="column=JMESPath over the tool's output ('@': all); repeatable"),
    ],
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="param=column, or param='{{ row.a }} ...' (a template); repeatable",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Rows run at a time")] = 8,
    as_json: JsonOption = False,
) -> None:
    """Run a tool over every row of a knowledge set and follow the job.

    Each --map fills a column from the tool's output; the progress bar shows rows done,
    failed, rows/s and time left. Exits 1 if the job did not succeed."""
    body = {
        "tool_id": tool,
        "input_mapping": {name: source for name, source in pairs("--input", input_ or [], _input)},
        "output_mapping": dict(pairs("--map", map_, lambda v: v)),
        "concurrency": concurrency,
    }
    with connected() as client:
        job = client.post(f"/knowledge/sets/{set_id}/enrichments", body)
        if not as_json:
            err().print(f"enrichment {job['id']}  ({job.get('temporal_ui_url')})", markup=False)
        started = time.monotonic()
        with job_progress() as progress:
            bar = progress.add_task("enrich", total=job["total"], failed=0, rate="")

            def fetch() -> dict[str, Any]:
                now: dict[str, Any] = client.get(
                    f"/knowledge/sets/{set_id}/enrichments/{job['id']}"
                )
                rows = now["done"] + now["failed"]
                rate = rows / max(time.monotonic() - started, 1e-6)
                progress.update(
                    bar,
                    completed=rows,
                    total=now["total"],
                    failed=now["failed"],
                    rate=f"{rate:.1f} rows/s",
                )
                return now

            try:
                job = poll(fetch, lambda j: j["status"] in JOB_FINAL)
            except KeyboardInterrupt:
                progress.stop()
                err().print(
                    f"stopped following; the job goes on: GET .../knowledge/sets/{set_id}"
                    f"/enrichments/{job['id']} (POST .../cancel stops it)",
                    markup=False,
                )
                raise typer.Exit(130) from None
    if as_json:
        print_json(job)
    else:
        out().print(
            f"enrichment {job['status']}: {job['done']} done, {job['failed']} failed "
            f"of {job['total']}" + (f" ({job['error']})" if job.get("error") else ""),
            markup=False,
        )
    if job["status"] != "succeeded":
        raise typer.Exit(1)


def _input(value: str) -> dict[str, str]:
    return {"template": value} if "{{" in value else {"column": value}


def pairs(
    option: str, given: list[str], convert: Callable[[str], Any]
) -> Iterator[tuple[str, Any]]:
    for pair in given:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value:
            err().print(f"{option} {pair!r}: write it as name=value", markup=False)
            raise typer.Exit(2)
        yield name.strip(), convert(value)


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)
    app.command()(enrich)
    app.add_typer(task_app, name="task")
    app.add_typer(tool_app, name="tool")
    app.add_typer(knowledge_app, name="knowledge")
