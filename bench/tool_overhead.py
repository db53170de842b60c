"""Throughput of a 5-step Baton tool against a plain Temporal chain of 5 no-op activities,
the same chain as 5 local activities (the engine's ceiling here) and a LangGraph graph of
the same 5 steps with its SQLite checkpointer (what a team might pick instead).

One embedded dev server (a SQLite file with WAL pragmas, as `baton up` runs it), one
in-process worker per side, the same number of runs and the same concurrency. Baton's runs
start through the API's code (a database row, then the workflow) and end with the run's
record written; its tool has 3 I/O steps (LLM steps on the offline scripted model: an
activity each) and 2 pure steps (template, transform: computed in the workflow). Each side
runs as it would in production: Baton's worker as `baton worker` builds it, the plain chain
with the SDK's defaults (in the sandbox). Prints runs/s of both and their ratio (Baton /
plain; above 1.0 means Baton is faster), and Baton's ratio to each other baseline.
LangGraph is a bench-only dependency: `pip install -e '.[bench]'`.

The same run measures what the workflow sandbox costs a tool run: Baton's worker again, once
with every workflow in the sandbox and once with none, each on its own task queue; and what
metering costs (bench/metering.py): an organisation on a plan with allowances and priced
models, its runs once metered and once with metering off. Then a `BENCH_RESULT {json}` line
for bench/run_all.py.

    python bench/tool_overhead.py [--runs 200] [--concurrency 20] [--rounds 2]
    python bench/tool_overhead.py --only-metering --rounds 8   # metering's pairs alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from dev_server import start_dev_server  # noqa: E402
from langgraph_chain import LangGraphChain  # noqa: E402
from metering import PLAN, overhead, plans_file, prices_file  # noqa: E402
from plain_chain import PlainChain, PlainLocalChain, noop  # noqa: E402

from baton.db import migrate  # noqa: E402
from baton.db.engine import create_engine, create_session_factory  # noqa: E402
from baton.db.repositories import accounts  # noqa: E402
from baton.db.repositories import credits as credit_repo  # noqa: E402
from baton.db.repositories import tools as tool_repo  # noqa: E402
from baton.domain.tools import ToolSpec  # noqa: E402
from baton.services.credits import plan_book  # noqa: E402
from baton.services.tool_runs import start_tool_run  # noqa: E402
from baton.settings import Settings  # noqa: E402
from worker import create_worker  # noqa: E402

FIVE_STEP_TOOL = ToolSpec.model_validate(
    {
        "name": "Five steps",
        "params": [{"name": "x", "type": "text"}],
        "steps": [
            {"name": "a", "type": "llm", "prompt": "{{ params.x }}"},
            {"name": "b", "type": "template", "template": "{{ steps.a.output | length }}"},
            {"name": "c", "type": "llm", "prompt": "{{ steps.b.output }}"},
            {
                "name": "d",
                "type": "transform",
                "input": "{{ [steps.c.output] }}",
                "expression": "[0]",
            },
            {"name": "e", "type": "llm", "prompt": "{{ steps.d.output }}"},
        ],
    }
)


async def measure(label: str, runs: int, concurrency: int, start_one) -> float:  # type: ignore[no-untyped-def]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await start_one(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    elapsed = time.perf_counter() - started
    rate = runs / elapsed
    print(f"  {label:<28} {runs} runs in {elapsed:6.2f}s  {rate:7.1f} runs/s")
    return rate


async def main(
    runs: int, concurrency: int, rounds: int, database: str = "", only_metering: bool = False
) -> None:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    database_url = database or f"sqlite+aiosqlite:///{data / 'baton.db'}"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    env = await start_dev_server(data)
    settings = Settings(
        data_dir=data,
        database_url=database_url,
        temporal_task_queue="bench-baton",
        plans_file=plans_file(data),
    )
    async with sessions.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Bench", project_name="Bench"
        )
        tool = await tool_repo.create_tool(
            session=session, project_id=created.project.id, spec=FIVE_STEP_TOOL
        )
        # The metering sides' organisation: on a plan with allowances, its models priced.
        metered = await accounts.bootstrap_organization(
            session=session, org_name="Metered", project_name="Metered"
        )
        await credit_repo.set_plan(
            session=session, plans=plan_book(settings), org_id=metered.org.id, plan=PLAN
        )
        metered_tool = await tool_repo.create_tool(
            session=session, project_id=metered.project.id, spec=FIVE_STEP_TOOL
        )
    project_id, tool_id = created.project.id, tool.id
    priced = settings.model_copy(update={"model_prices_file": prices_file(data)})
    metering_on = priced.model_copy(update={"temporal_task_queue": "bench-metered"})
    metering_off = priced.model_copy(
        update={"temporal_task_queue": "bench-unmetered", "metering": False}
    )

    def baton_runs(  # type: ignore[no-untyped-def]
        task_queue: str, side: Settings = settings, project: str = project_id, tool: str = tool_id
    ):
        queue_settings = side.model_copy(update={"temporal_task_queue": task_queue})

        async def baton_run(i: int) -> None:
            async with sessions() as session:
                run = await start_tool_run(
                    session=session,
                    temporal_client=env.client,
                    settings=queue_settings,
                    project_id=project,
                    tool_id=tool,
                    params={"x": f"run {i}"},
                )
            await env.client.get_workflow_handle(run.workflow_id).result()

        return baton_run

    baton_run = baton_runs("bench-baton")
    sandboxed_run = baton_runs("bench-baton-sandboxed")
    unsandboxed_run = baton_runs("bench-baton-unsandboxed")
    metered_project, metered_tool_id = metered.project.id, metered_tool.id
    metered_run = baton_runs("bench-metered", metering_on, metered_project, metered_tool_id)
    unmetered_run = baton_runs("bench-unmetered", metering_off, metered_project, metered_tool_id)

    async def plain_run(i: int) -> None:
        await env.client.execute_workflow(
            PlainChain.run, f"run {i}", id=f"plain-{uuid.uuid4()}", task_queue="bench-plain"
        )

    baton_worker = create_worker(
        env.client, task_queue="bench-baton", session_factory=sessions, settings=settings
    )
    # Production's worker with the runner of every workflow replaced: the sandbox's cost.
    production = baton_worker.config()
    sandbox = production["workflow_runner"]
    sandboxed_worker = Worker(
        **{
            **production,
            "task_queue": "bench-baton-sandboxed",
            "unsandboxed_workflow_runner": sandbox,
        }
    )
    outside = UnsandboxedWorkflowRunner()
    unsandboxed_worker = Worker(
        **{
            **production,
            "task_queue": "bench-baton-unsandboxed",
            "workflow_runner": outside,
            "unsandboxed_workflow_runner": outside,
        }
    )
    metered_worker, unmetered_worker = (
        create_worker(
            env.client,
            task_queue=side.temporal_task_queue,
            session_factory=sessions,
            settings=side,
        )
        for side in (metering_on, metering_off)
    )
    plain_worker = Worker(
        env.client,
        task_queue="bench-plain",
        workflows=[PlainChain, PlainLocalChain],
        activities=[noop],
    )

    async def local_run(i: int) -> None:
        await env.client.execute_workflow(
            PlainLocalChain.run, f"run {i}", id=f"local-{uuid.uuid4()}", task_queue="bench-plain"
        )

    langgraph = LangGraphChain(data / "langgraph.db")

    async def langgraph_run(i: int) -> None:
        await langgraph.run(str(uuid.uuid4()), f"run {i}")

    kind = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
    print(f"tool_overhead: {runs} runs per side per round, concurrency {concurrency}, {kind}")
    baton_rates, plain_rates, sandboxed_rates, unsandboxed_rates = [], [], [], []
    local_rates, langgraph_rates, metered_rates, unmetered_rates = [], [], [], []
    async with (
        baton_worker,
        plain_worker,
        sandboxed_worker,
        unsandboxed_worker,
        metered_worker,
        unmetered_worker,
        langgraph,
    ):
        await measure("warm-up (not counted)", 20, concurrency, plain_run)
        await measure("warm-up (not counted)", 20, concurrency, local_run)
        await measure("warm-up (not counted)", 20, concurrency, langgraph_run)
        await measure("warm-up (not counted)", 20, concurrency, baton_run)
        await measure("warm-up (not counted)", 20, concurrency, sandboxed_run)
        await measure("warm-up (not counted)", 20, concurrency, unsandboxed_run)
        await measure("warm-up (not counted)", 20, concurrency, metered_run)
        await measure("warm-up (not counted)", 20, concurrency, unmetered_run)
        for round_no in range(1, rounds + 1):
            print(f" round {round_no}")
            if only_metering:
                for label, start_one, rates in [
                    ("Baton, metered", metered_run, metered_rates),
                    ("Baton, metering off", unmetered_run, unmetered_rates),
                ][:: 1 if round_no % 2 else -1]:
                    rates.append(await measure(label, runs, concurrency, start_one))
                continue
            plain_rates.append(
                await measure("plain 5-activity chain", runs, concurrency, plain_run)
            )
            baton_rates.append(await measure("Baton 5-step tool", runs, concurrency, baton_run))
            local_rates.append(
                await measure("5-local-activity chain", runs, concurrency, local_run)
            )
            langgraph_rates.append(
                await measure("LangGraph + SQLite saver", runs, concurrency, langgraph_run)
            )
            # Alternately first: a later measurement meets a larger database and history.
            pairs = [
                [
                    ("Baton, all in the sandbox", sandboxed_run, sandboxed_rates),
                    ("Baton, none in the sandbox", unsandboxed_run, unsandboxed_rates),
                ],
                [
                    ("Baton, metered", metered_run, metered_rates),
                    ("Baton, metering off", unmetered_run, unmetered_rates),
                ],
            ]
            for sides in pairs:
                for label, start_one, rates in sides if round_no % 2 else sides[::-1]:
                    rates.append(await measure(label, runs, concurrency, start_one))
    await env.shutdown()
    await engine.dispose()
    shutil.rmtree(data, ignore_errors=True)
    if only_metering:
        print_metering(metered_rates, unmetered_rates)
        return
    baton_rate = sum(baton_rates) / len(baton_rates)
    plain_rate = sum(plain_rates) / len(plain_rates)
    sandboxed_rate = sum(sandboxed_rates) / len(sandboxed_rates)
    unsandboxed_rate = sum(unsandboxed_rates) / len(unsandboxed_rates)
    local_rate = sum(local_rates) / len(local_rates)
    langgraph_rate = sum(langgraph_rates) / len(langgraph_rates)
    metered_rate = sum(metered_rates) / len(metered_rates)
    unmetered_rate = sum(unmetered_rates) / len(unmetered_rates)
    print(f"plain chain: {plain_rate:.1f} runs/s")
    print(f"5-local-activity chain: {local_rate:.1f} runs/s")
    print(f"LangGraph: {langgraph_rate:.1f} runs/s")
    print(f"Baton tool:  {baton_rate:.1f} runs/s")
    print(f"ratio (Baton / plain): {baton_rate / plain_rate:.2f}  (target >= 1.0)")
    print(f"ratio (Baton / local chain): {baton_rate / local_rate:.2f}  (target >= 0.9)")
    print(f"ratio (Baton / LangGraph): {baton_rate / langgraph_rate:.2f}")
    print(f"Baton tool in the sandbox:      {sandboxed_rate:.1f} runs/s")
    print(f"Baton tool outside the sandbox: {unsandboxed_rate:.1f} runs/s")
    print(f"sandbox cost: {1 - sandboxed_rate / unsandboxed_rate:.1%} of the runs/s")
    print_metering(metered_rates, unmetered_rates)
    figure = {
        "name": f"Baton 5-step tool ({kind})",
        "value": baton_rate,
        "unit": "runs/s",
        "better": "higher",
        "baseline": {"name": "plain 5-activity Temporal chain", "value": plain_rate},
    }
    local_figure = {
        **figure,
        "baseline": {"name": "5-local-activity Temporal chain", "value": local_rate},
    }
    langgraph_figure = {
        **figure,
        "baseline": {"name": "LangGraph graph, SQLite checkpointer", "value": langgraph_rate},
    }
    sandbox_figure = {
        "name": f"Baton 5-step tool in the workflow sandbox ({kind})",
        "value": sandboxed_rate,
        "unit": "runs/s",
        "better": "higher",
        "baseline": {"name": "the same outside the sandbox", "value": unsandboxed_rate},
    }
    metering_figure = {
        "name": f"Baton 5-step tool, metered: plan {PLAN}, priced models ({kind})",
        "value": metered_rate,
        "unit": "runs/s",
        "better": "higher",
        "baseline": {"name": "the same with metering off", "value": unmetered_rate},
    }
    print(
        "BENCH_RESULT "
        + json.dumps(
            {
                "benchmark": "tool_overhead",
                "figures": [
                    figure,
                    local_figure,
                    langgraph_figure,
                    sandbox_figure,
                    metering_figure,
                ],
            }
        )
    )


def print_metering(metered_rates: list[float], unmetered_rates: list[float]) -> None:
    metered_rate = sum(metered_rates) / len(metered_rates)
    unmetered_rate = sum(unmetered_rates) / len(unmetered_rates)
    # Each round's pair measured side by side: the spread between rounds is the noise.
    pairs = [overhead(m, u) for m, u in zip(metered_rates, unmetered_rates, strict=True)]
    median = statistics.median(pairs)
    print(f"Baton tool, metered:      {metered_rate:.1f} runs/s")
    print(f"Baton tool, metering off: {unmetered_rate:.1f} runs/s")
    print(
        f"metering cost: {overhead(metered_rate, unmetered_rate):.1%} of the runs/s "
        f"(target under 5%; round by round {', '.join(f'{p:.0%}' for p in pairs)})"
    )
    print(f"metering cost, the median of the rounds: {median:.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--database-url", default="", help="Baton's database (default: a new SQLite file)"
    )
    parser.add_argument(
        "--only-metering", action="store_true", help="measure only metering's pairs"
    )
    args = parser.parse_args()
    asyncio.run(
        main(args.runs, args.concurrency, args.rounds, args.database_url, args.only_metering)
    )
