"""The baseline of the benchmarks: a plain Temporal workflow of no-op activities in sequence.
A module of its own because the workflow sandbox re-imports a workflow's module."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.noop")
async def noop(value: str) -> str:
    return value


@workflow.defn(name="PlainChain")
class PlainChain:
    @workflow.run
    async def run(self, value: str) -> str:
        for _ in range(5):
            value = await workflow.execute_activity(
                noop, value, start_to_close_timeout=timedelta(seconds=30)
            )
        return value


@workflow.defn(name="PlainLocalChain")
class PlainLocalChain:
    """The same chain as local activities: the ceiling of what the engine can do here (no
    activity task round trips through the server)."""

    @workflow.run
    async def run(self, value: str) -> str:
        for _ in range(5):
            value = await workflow.execute_local_activity(
                noop, value, start_to_close_timeout=timedelta(seconds=30)
            )
        return value
