"""Latency of a trivial code step (`result = 1`) in the bubblewrap sandbox against the same
step run unsandboxed (BATON_CODE_SANDBOX=none, the baseline): what the sandbox adds to every
code step (target: under 50 ms at the median).

Each step runs as the worker runs it (StepRunner.code: a child Python with its limits, the
job in, the report out), one at a time, the two kinds alternating so both see the same
machine load; the sandbox is checked once before timing starts, as the worker does at start.
Prints p50 and p90 of each and the difference, then a `BENCH_RESULT {json}` line for
bench/run_all.py.

    python bench/code_sandbox.py [--runs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from activities.steps import StepRunner  # noqa: E402
from baton.domain.tools import CodeStep  # noqa: E402
from baton.integrations.sandbox import find_bubblewrap  # noqa: E402
from baton.services.provider_configs import settings_provider_configs  # noqa: E402
from baton.settings import CodeSandbox, Settings  # noqa: E402

STEP = CodeStep(name="trivial", type="code", code="result = 1")


def runner(sandbox: CodeSandbox) -> StepRunner:
    settings = Settings(code_sandbox=sandbox)
    return StepRunner(settings, settings_provider_configs(settings))


async def one_step(step_runner: StepRunner) -> float:
    started = time.perf_counter()
    assert await step_runner.code(STEP, {"params": {}, "secrets": {}}) == 1
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(runs: int) -> None:
    sandbox = await find_bubblewrap(Settings().code_bwrap_path)
    if sandbox.drop is not None:
        host_uid = "65534 (setpriv, in the worker's user namespace)"
    else:
        host_uid = "the worker's" if sandbox.host_uid is None else str(sandbox.host_uid)
    print(f"bubblewrap: {sandbox.executable}, python {sandbox.python}, host uid {host_uid}")
    sandboxed, bare = runner(CodeSandbox.bwrap), runner(CodeSandbox.none)
    for warm_up in (sandboxed, bare):
        await one_step(warm_up)
    timings: dict[str, list[float]] = {"sandboxed": [], "unsandboxed": []}
    for _ in range(runs):
        timings["sandboxed"].append(await one_step(sandboxed))
        timings["unsandboxed"].append(await one_step(bare))

    print(f"{runs} trivial code steps of each kind, alternating:")
    for kind, values in timings.items():
        print(
            f"  {kind:<12} p50 {statistics.median(values):6.1f} ms   "
            f"p90 {percentile(values, 0.9):6.1f} ms"
        )
    with_sandbox = statistics.median(timings["sandboxed"])
    without = statistics.median(timings["unsandboxed"])
    added = with_sandbox - without
    verdict = "within" if added < 50 else "over"
    print(f"the sandbox adds {added:.1f} ms at the median ({verdict} the 50 ms target)")
    result = {
        "benchmark": "code_sandbox",
        "figures": [
            {
                "name": "trivial code step p50, in bubblewrap",
                "value": round(with_sandbox, 1),
                "unit": "ms",
                "better": "lower",
                "baseline": {"name": "unsandboxed (none)", "value": round(without, 1)},
            },
            {
                "name": "added by the sandbox, p50",
                "value": round(added, 1),
                "unit": "ms",
                "better": "lower",
            },
        ],
    }
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs))
