"""`ToolRunWorkflow`: a tool's steps, run by the step interpreter (baton/steps/engine.py)
with this workflow as its executor: I/O steps are activities, called by the names the step
registry gives (baton/steps/registry.py); `tool` and `delay` steps are a child workflow and a
timer. Pure steps (template, transform, `if` conditions, `foreach` lists) are computed in the
interpreter, here, so they cost no round trip to the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)

with workflow.unsafe.imports_passed_through():
    from baton import activity_names, templating
    from baton.domain.credits import LlmCharge
    from baton.domain.tool_checks import needs_secrets, validate_params
    from baton.domain.tool_runs import (
        StepCall,
        StepOutcome,
        StepRecord,
        ToolRunFinish,
        ToolRunInput,
        ToolRunProgress,
        ToolRunResult,
        tool_run_workflow_id,
    )
    from baton.domain.tools import (
        DelayStep,
        Step,
        ToolCallStep,
        ToolRunStatus,
    )
    from baton.errors import BatonError
    from baton.search_attributes import BATON_STATUS
    from baton.steps.engine import StepEngine, StepError
    from baton.steps.registry import StepKind
    from workflows import policies

MAX_TOOL_DEPTH = 8
# A `workflow.patched` id: a failed run ends Failed (it used to complete), with this type.
FAIL_FAILED_RUNS = "fail-failed-tool-runs"
RUN_FAILED = "ToolRunFailed"
# A `workflow.patched` id: a run given its plan's time limit is stopped by a timer.
TOOL_RUN_TIME_LIMIT = "tool-run-time-limit"


# Outside the sandbox: every tool call is a run, and the sandbox would re-import this module
# for each (compiling it again where bytecode is not cached, as in many containers) and
# route each payload through it. The code here is pure (templates, JMESPath, no clock, no
# I/O); `Settings.sandbox_all_workflows` runs it sandboxed, as the test suite does.
@workflow.defn(name="ToolRunWorkflow", sandboxed=False)
class ToolRunWorkflow:
    def __init__(self) -> None:
        self._records: list[StepRecord] = []
        self._charges: list[LlmCharge] = []
        self._current = ""
        self._status = ToolRunStatus.running

    @workflow.run
    async def run(self, run: ToolRunInput) -> ToolRunResult:
        self._run = run
        # One budget for every template this run renders here: all of them may run in one
        # workflow task, which must end well before the deadlock detector fires.
        self._budget = templating.Budget(
            templating.TOOL_RUN_WORK, scope="this tool run's templates"
        )
        spec = run.specs[run.tool_id]
        context: dict[str, Any] = {"params": run.params, "steps": {}, "snippets": run.snippets}
        if run.persist:
            workflow.upsert_search_attributes([BATON_STATUS.value_set(ToolRunStatus.running)])
        engine = StepEngine(self, budget=self._budget, observer=self)
        try:
            limit = run.time_limit_seconds
            if limit is not None and workflow.patched(TOOL_RUN_TIME_LIMIT):
                output = await self._within(limit, engine.run(spec, context))
            else:
                output = await engine.run(spec, context)
            result = ToolRunResult(status=ToolRunStatus.succeeded, output=output)
        except StepError as exc:
            step = exc.step or "output"
            result = ToolRunResult(
                status=ToolRunStatus.failed, error=f"step {step}: {exc.message}", failed_step=step
            )
        except asyncio.CancelledError:
            await self._finish(ToolRunResult(status=ToolRunStatus.cancelled, error="cancelled"))
            raise
        await self._finish(result)
        if result.status is ToolRunStatus.failed and workflow.patched(FAIL_FAILED_RUNS):
            # Failed in Temporal too, once its row says why: the UI's status filter finds it.
            raise ApplicationError(
                result.error or "failed", type=RUN_FAILED, non_retryable=True
            ) from None
        return result

    async def _within(self, seconds: int, steps: Awaitable[Any]) -> Any:
        """The steps' output, unless they take longer than `seconds` (the plan's
        `tool_run_seconds`): then what still runs is cancelled and the step running fails
        naming the limit."""
        work = asyncio.ensure_future(steps)
        try:
            await workflow.wait_condition(work.done, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            await _cancelled(work)
            raise StepError(
                f"the run took longer than its plan's tool_run_seconds ({seconds} s)",
                step=self._current or None,
            ) from None
        except asyncio.CancelledError:
            await _cancelled(work)
            raise
        return work.result()

    @workflow.query
    def progress(self) -> ToolRunProgress:
        return ToolRunProgress(
            status=self._status, current_step=self._current, records=self._records
        )

    async def _finish(self, result: ToolRunResult) -> None:
        self._status = result.status
        workflow.set_current_details(result.status.value)
        if not self._run.persist:
            return
        workflow.upsert_search_attributes([BATON_STATUS.value_set(result.status.value)])
        await workflow.execute_local_activity(
            activity_names.TOOL_RUN_FINISH,
            ToolRunFinish(
                run_id=self._run.run_id,
                status=result.status,
                output=result.output,
                error=result.error,
                records=self._records,
                project_id=self._run.project_id,
                charges=self._charges,
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"run {result.status.value}",
        )

    # The interpreter's observer: the `progress` query and the records written at the end.
    def now(self) -> datetime:
        return workflow.now()

    def started(self, step: Step) -> None:
        self._current = step.name
        workflow.set_current_details(f"step {step.name} ({step.type})")

    def recorded(self, record: StepRecord) -> None:
        self._records.append(record)

    # The interpreter's executor.
    async def execute(
        self,
        step: Step,
        kind: StepKind[Any],
        context: dict[str, Any],
        *,
        position: int,
        item: int,
    ) -> Any:
        if kind.activity is not None:
            return await self._activity(kind, position, item, step, context)
        run_here = _IN_WORKFLOW.get(step.type)
        if run_here is None:
            raise StepError(f"{step.type} steps cannot run in a tool run")
        return await run_here(self, step, context)

    async def _delay(self, step: Step, context: dict[str, Any]) -> Any:
        assert isinstance(step, DelayStep)
        await workflow.sleep(timedelta(seconds=step.seconds), summary=f"step {step.name}")
        return None

    async def _call_tool(self, step: Step, context: dict[str, Any]) -> Any:
        assert isinstance(step, ToolCallStep)
        run = self._run
        if run.depth >= MAX_TOOL_DEPTH:
            raise StepError(f"tools call each other more than {MAX_TOOL_DEPTH} deep")
        spec = run.specs.get(step.tool_id)
        if spec is None:
            raise StepError(f"tool {step.tool_id} is not part of this run")
        try:
            rendered = templating.render_tree(step.params, context, budget=self._budget)
            params = validate_params(spec, rendered)
        except templating.TemplateError as exc:
            raise StepError(str(exc)) from exc
        except BatonError as exc:
            raise StepError(exc.message) from exc
        child_id = str(workflow.uuid4())
        try:
            result = await workflow.execute_child_workflow(
                ToolRunWorkflow.run,
                ToolRunInput(
                    run_id=child_id,
                    project_id=run.project_id,
                    tool_id=step.tool_id,
                    tool_version=0,
                    specs=run.specs,
                    params=params,
                    persist=False,
                    depth=run.depth + 1,
                    snippets=run.snippets,
                ),
                id=tool_run_workflow_id(child_id),
                static_summary=f"step {step.name}: tool {spec.name}",
            )
        except ChildWorkflowError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == RUN_FAILED:
                raise StepError(f"tool {spec.name}: {cause.message}") from exc
            raise StepError(f"tool {spec.name} failed: {cause or exc}") from exc
        if result.status is not ToolRunStatus.succeeded:
            raise StepError(f"tool {spec.name}: {result.error}")
        return result.output

    async def _activity(
        self, kind: StepKind[Any], position: int, item: int, step: Step, context: dict[str, Any]
    ) -> Any:
        call = StepCall(
            run_id=self._run.run_id,
            project_id=self._run.project_id,
            position=position,
            item=item,
            step=step,
            context=context,
            persist=self._run.persist,
            needs_secrets=needs_secrets(step),
        )
        assert kind.activity is not None
        suffix = f" [{item}]" if item >= 0 else ""
        try:
            outcome: StepOutcome = await workflow.execute_activity(
                kind.activity,
                call,
                result_type=StepOutcome,
                start_to_close_timeout=timedelta(seconds=step.timeout_seconds),
                heartbeat_timeout=kind.heartbeat,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=500),
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=step.retries + 1,
                ),
                summary=f"step {step.name}{suffix}: {kind.describe(step)}",
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                # The run itself was cancelled: end as cancelled, not as a failed step.
                raise asyncio.CancelledError() from exc
            raise StepError(_cause(exc)) from exc
        self._charges.extend(outcome.charges)
        return outcome.output


# The steps that need a workflow of their own (`StepKind.runs_in_workflow_only`).
_IN_WORKFLOW: dict[str, Callable[[ToolRunWorkflow, Step, dict[str, Any]], Awaitable[Any]]] = {
    "delay": ToolRunWorkflow._delay,
    "tool": ToolRunWorkflow._call_tool,
}


async def _cancelled(work: asyncio.Future[Any]) -> None:
    """Cancels `work` and waits until it has stopped, whatever it ends with."""
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, StepError):
        await work


def _cause(exc: ActivityError) -> str:
    cause: BaseException | None = exc.cause
    while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError):
        if cause.cause is None:
            break
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
