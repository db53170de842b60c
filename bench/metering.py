"""What metering costs, for the benchmarks that print it (bench/tool_overhead.py,
bench/agent_tasks.py): the same runs with metering on, as an installation serving many teams
has it (the organisation on a plan with the `pro` plan's monthly allowances to count against,
and the offline models priced, so that every model call is charged too), and off
(BATON_METERING=off: nothing is required or charged). The plan has none of `pro`'s quotas
(requests per minute, concurrent tasks): they would measure the quotas, which apply with
metering off too, not metering."""

from __future__ import annotations

from pathlib import Path

import yaml

PLAN = "metered"
PLANS = {PLAN: {"monthly_actions": 10_000, "monthly_vendor_credits": 20}}
# Vendor credits per 1,000 tokens; the offline models have no price of their own.
PRICES = {
    f"scripted:{name}": {"input": 0.001, "cached_input": 0.0005, "output": 0.002}
    for name in ("echo", "tools")
}


def prices_file(data: Path) -> Path:
    path = data / "bench-prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    return path


def plans_file(data: Path) -> Path:
    path = data / "bench-plans.yaml"
    path.write_text(yaml.safe_dump(PLANS))
    return path


def metering_env(data: Path, *, on: bool) -> dict[str, str]:
    """Baton's settings for one side, as BATON_* variables (a new organisation starts on
    the plan)."""
    return {
        "BATON_METERING": "true" if on else "false",
        "BATON_MODEL_PRICES_FILE": str(prices_file(data)),
        "BATON_PLANS_FILE": str(plans_file(data)),
        "BATON_DEFAULT_PLAN": PLAN,
    }


def overhead(metered: float, unmetered: float) -> float:
    """Metering's cost as the share of throughput it takes (target under 5 %)."""
    return 1 - metered / unmetered
