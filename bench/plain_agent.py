"""The baseline of bench/agent_tasks.py: a plain Temporal workflow doing the least an agent
task of two tool calls needs, one activity per model call and one per tool call (the two
tools at once, as Baton runs them), with no database, events or approvals. A module of its
own because the workflow sandbox re-imports a workflow's module."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.model")
async def model(turn: int) -> list[str]:
    """The first call asks for two tools, the second answers."""
    return ["one", "two"] if turn == 0 else []


@activity.defn(name="bench.tool")
async def tool(text: str) -> str:
    return f"tool got {text}"


@workflow.defn(name="PlainAgent")
class PlainAgent:
    @workflow.run
    async def run(self, message: str) -> str:
        timeout = timedelta(seconds=30)
        results: list[str] = []
        for turn in range(10):
            calls = await workflow.execute_activity(model, turn, start_to_close_timeout=timeout)
            if not calls:
                return f"{message}: {', '.join(results)}"
            results = await asyncio.gather(
                *(
                    workflow.execute_activity(tool, call, start_to_close_timeout=timeout)
                    for call in calls
                )
            )
        return "no answer"
