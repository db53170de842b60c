"""Runs every benchmark under bench/ and writes BENCHMARKS.md: each figure, its baseline
measured in the same run, the ratio, the machine and the date.

A benchmark is a script here with a `__main__` block (helper modules such as plain_chain.py
have none). Each runs as a subprocess with its default arguments and reports on stdout like
a person would, ending with one machine-readable line:

    BENCH_RESULT {"benchmark": "tool_overhead", "figures": [{"name": "...", "value": 12.3,
        "unit": "runs/s", "better": "higher", "baseline": {"name": "...", "value": 11.0}}]}

`better` and `baseline` are optional; a figure without a baseline shows none.

    python bench/run_all.py [--only tool_overhead agent_tasks] [--timeout 1800]
        [--postgres postgresql+asyncpg://...]

`--postgres` adds the streams figures on PostgreSQL (bench/streams.py --database-url, in a
database of its own on that server), after the others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REPORT = ROOT / "BENCHMARKS.md"
RESULT_PREFIX = "BENCH_RESULT "
# A database URL in a command shown in the report: it may name a host and hold a password.
REDACTED = "<database url>"


@dataclass
class Outcome:
    name: str
    description: str
    seconds: float = 0.0
    figures: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""
    command: tuple[Path | str, ...] = ()

    def shown_command(self) -> str:
        script, *args = self.command
        shown = [f"bench/{Path(script).name}", *(REDACTED if "://" in a else a for a in args)]
        return "python " + " ".join(shown)


def discover() -> list[Path]:
    return sorted(
        path
        for path in BENCH_DIR.glob("*.py")
        if path.name != Path(__file__).name and 'if __name__ == "__main__":' in path.read_text()
    )


def first_paragraph(script: Path) -> str:
    """The docstring's first paragraph: what the benchmark measures."""
    text = script.read_text().lstrip()
    quote = text[:3]
    if quote not in ('"""', "'''"):
        return ""
    paragraph = text[3:].split(quote)[0].split("\n\n")[0]
    return " ".join(paragraph.split())


def run(script: Path, timeout: float, *, name: str = "", args: tuple[str, ...] = ()) -> Outcome:
    outcome = Outcome(
        name=name or script.stem, description=first_paragraph(script), command=(script, *args)
    )
    print(f"== {outcome.name}", flush=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(
            [sys.executable, str(script), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        outcome.problem = f"did not finish within {timeout:.0f} s"
        return outcome
    finally:
        outcome.seconds = time.monotonic() - started
    print(completed.stdout, end="", flush=True)
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no error output"]
        outcome.problem = f"exited with {completed.returncode}: {tail[0]}"
        return outcome
    results = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not results:
        outcome.problem = f"printed no `{RESULT_PREFIX.strip()}` line"
        return outcome
    outcome.figures = json.loads(results[-1].removeprefix(RESULT_PREFIX))["figures"]
    return outcome


def machine() -> str:
    memory = "unknown memory"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB memory"
    # Other work on the machine slows every figure; the load average says how busy it was.
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPU cores, {memory}, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; load average {load:.1f} when the run began"
    )


def commit() -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return found.stdout.strip() or "unknown"


def number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def figure_row(figure: dict[str, Any]) -> str:
    value = f"{number(figure['value'])} {figure.get('unit', '')}".strip()
    baseline = figure.get("baseline")
    if not baseline:
        return f"| {figure['name']} | {value} | none in this script | |"
    ratio = figure["value"] / baseline["value"] if baseline["value"] else float("nan")
    better = figure.get("better")
    reading = f" ({better} is better)" if better else ""
    base = f"{baseline['name']}: {number(baseline['value'])} {figure.get('unit', '')}".strip()
    return f"| {figure['name']} | {value} | {base} | {ratio:.2f}{reading} |"


def report(outcomes: list[Outcome], started: datetime) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/run_all.py`; do not edit by hand.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Commit: {commit()}",
        "",
        "Each benchmark starts its own embedded stack (Temporal dev server with SQLite unless it",
        "says otherwise) and measures its baseline in the same run, on the same server; the",
        "ratio is the figure divided by its baseline.",
    ]
    for outcome in outcomes:
        lines += ["", f"## {outcome.name}", ""]
        if outcome.description:
            lines += [outcome.description, ""]
        if outcome.problem:
            lines += [f"No figures: {outcome.problem}."]
            continue
        lines += [
            "| figure | value | baseline (same run) | ratio |",
            "|---|---|---|---|",
            *(figure_row(figure) for figure in outcome.figures),
            "",
            f"Ran in {outcome.seconds:.0f} s: `{outcome.shown_command()}`.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names (default: all)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run bench/streams.py on this PostgreSQL server (postgresql+asyncpg://...)",
    )
    args = parser.parse_args()
    scripts = [s for s in discover() if not args.only or s.stem in args.only]
    started = datetime.now(UTC)
    outcomes = [run(script, args.timeout) for script in scripts]
    if args.postgres:
        streams = BENCH_DIR / "streams.py"
        postgres = ("--database-url", args.postgres)
        outcomes.append(run(streams, args.timeout, name="streams_postgresql", args=postgres))
    REPORT.write_text(report(outcomes, started))
    print(f"wrote {REPORT.name}")
    if any(outcome.problem for outcome in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
