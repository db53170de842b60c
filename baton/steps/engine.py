"""The interpreter of a tool's steps: the steps in order, each step's `if`, `foreach` (with its
`concurrency`) and `continue_on_error`, the context later templates read (`steps.<name>`),
and the tool's `output` template.

Where a step runs is the executor's business: ToolRunWorkflow's calls activities by name
(Temporal retries them and times them out), an enrichment batch's calls the same code in
process (activities/steps.py: `InProcessExecutor`, which retries and times out as Temporal
would). Pure steps (`StepKind.compute`) are computed here, wherever the interpreter runs.

Deterministic, so a workflow may run it: no I/O, no clock but the observer's, and
concurrency only through asyncio primitives that a workflow's event loop orders the same on
every replay (`gather` schedules the items of a `foreach` in their order)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from baton import templating
from baton.domain.tool_runs import StepRecord
from baton.domain.tools import Step, StepStatus, ToolSpec
from baton.steps.errors import StepError
from baton.steps.registry import STEP_KINDS, StepKind

__all__ = ["StepEngine", "StepError", "StepExecutor", "StepObserver"]


class StepExecutor(Protocol):
    async def execute(
        self,
        step: Step,
        kind: StepKind[Any],
        context: dict[str, Any],
        *,
        position: int,
        item: int,
    ) -> Any:
        """Runs one step the interpreter does not compute itself (`kind.compute` is None),
        its templates rendered against `context`; `item` is the foreach index (-1 outside a
        foreach). Returns the step's output, or raises StepError."""
        ...


class StepObserver(Protocol):
    """Who watches a run step by step (a tool run's workflow, for its `progress` query and
    its step records); an enrichment row has none."""

    def now(self) -> datetime: ...

    def started(self, step: Step) -> None: ...

    def recorded(self, record: StepRecord) -> None: ...


class StepEngine:
    def __init__(
        self,
        executor: StepExecutor,
        *,
        budget: templating.Budget,
        observer: StepObserver | None = None,
        kinds: Mapping[str, StepKind[Any]] = STEP_KINDS,
    ) -> None:
        """`budget`: the work all of the run's templates may do together."""
        self._executor = executor
        self._budget = budget
        self._observer = observer
        self._kinds = kinds

    async def run(self, spec: ToolSpec, context: dict[str, Any]) -> Any:
        """The tool's output. `context` holds `params` and `snippets`; each step's result is
        added under `steps`. Raises StepError for a step that failed (and may not continue)
        or an output template that failed (`step` None)."""
        context.setdefault("steps", {})
        output: Any = None
        for position, step in enumerate(spec.steps):
            if self._observer is not None:
                self._observer.started(step)
            result = await self._step(position, step, context)
            context["steps"][step.name] = result
            output = result["output"]
        if spec.output is not None:
            output = self._render(spec.output, context, step=None)
        return output

    async def _step(self, position: int, step: Step, context: dict[str, Any]) -> dict[str, Any]:
        if step.if_ is not None and not self._condition(step, context):
            self._record(
                position=position, name=step.name, type=step.type, status=StepStatus.skipped
            )
            return {"output": None, "status": StepStatus.skipped.value, "error": None}
        if step.foreach is None:
            output, error = await self._attempt(position, -1, step, context)
            status = StepStatus.failed if error else StepStatus.succeeded
            return {"output": output, "status": status.value, "error": error}

        foreach = step.foreach if "{{" in step.foreach else "{{ " + step.foreach + " }}"
        items = self._render(foreach, context, step=step.name)
        if not isinstance(items, list):
            raise StepError(f"foreach must give a list, got {type(items).__name__}", step=step.name)
        gate = asyncio.Semaphore(step.concurrency)

        async def one(index: int, item: Any) -> tuple[Any, str | None]:
            async with gate:
                scoped = {**context, "foreach": {"item": item, "index": index}}
                return await self._attempt(position, index, step, scoped)

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        errors = [error for _, error in results if error]
        return {
            "output": [output for output, _ in results],
            "status": (StepStatus.failed if errors else StepStatus.succeeded).value,
            "error": errors[0] if errors else None,
            "errors": [error for _, error in results],
        }

    async def _attempt(
        self, position: int, item: int, step: Step, context: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """Runs the step (or one foreach item): (output, error) when the step may continue on
        error; raises StepError when it may not."""
        started = self._now()
        try:
            output = await self._execute(position, item, step, context)
        except StepError as exc:
            self._record(
                position=position,
                item=item,
                name=step.name,
                type=step.type,
                status=StepStatus.failed,
                error=exc.message,
                duration_ms=self._since(started),
            )
            if step.continue_on_error:
                return None, exc.message
            raise
        self._record(
            position=position,
            item=item,
            name=step.name,
            type=step.type,
            status=StepStatus.succeeded,
            output=output,
            duration_ms=self._since(started),
        )
        return output, None

    async def _execute(self, position: int, item: int, step: Step, context: dict[str, Any]) -> Any:
        kind = self._kinds[step.type]
        try:
            if kind.compute is not None:
                return kind.compute(step, lambda template: self._render(template, context))
            return await self._executor.execute(step, kind, context, position=position, item=item)
        except StepError as exc:
            if exc.step is not None:
                raise
            raise StepError(exc.message, step=step.name) from exc

    def _render(self, template: str, context: dict[str, Any], *, step: str | None = None) -> Any:
        try:
            return templating.render(template, context, budget=self._budget)
        except templating.TemplateError as exc:
            raise StepError(str(exc), step=step) from exc

    def _condition(self, step: Step, context: dict[str, Any]) -> bool:
        try:
            return templating.truthy(step.if_ or "", context, budget=self._budget)
        except templating.TemplateError as exc:
            raise StepError(f"if: {exc}", step=step.name) from exc

    def _now(self) -> datetime | None:
        return self._observer.now() if self._observer is not None else None

    def _since(self, started: datetime | None) -> int:
        if started is None or self._observer is None:
            return 0
        return int((self._observer.now() - started).total_seconds() * 1000)

    def _record(self, **fields: Any) -> None:
        if self._observer is not None:
            self._observer.recorded(StepRecord(**fields))
