"""`ToolRunWorkflow`: a tool's steps in order. I/O steps are activities; pure steps
(template, transform, `if` conditions, `foreach` lists) are computed right here, so they cost
no round trip to the server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

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
    import jmespath

    from baton import activity_names, templating
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
        CodeStep,
        DelayStep,
        HttpStep,
        KnowledgeStepBase,
        LlmStep,
        Step,
        StepStatus,
        TemplateStep,
        ToolCallStep,
        ToolRunStatus,
        TransformStep,
    )
    from baton.errors import BatonError
    from baton.search_attributes import BATON_STATUS
    from workflows import policies

MAX_TOOL_DEPTH = 8


class StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


# Outside the sandbox: every tool call is a run, and the sandbox would re-import this module
# for each (compiling it again where bytecode is not cached, as in many containers) and
# route each payload through it. The code here is pure (templates, JMESPath, no clock, no
# I/O); `Settings.sandbox_all_workflows` runs it sandboxed, as the test suite does.
@workflow.defn(name="ToolRunWorkflow", sandboxed=False)
class ToolRunWorkflow:
    def __init__(self) -> None:
        self._records: list[StepRecord] = []
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
        try:
            output: Any = None
            for position, step in enumerate(spec.steps):
                self._current = step.name
                workflow.set_current_details(f"step {step.name} ({step.type})")
                step_result = await self._run_step(position, step, context)
                context["steps"][step.name] = step_result
                output = step_result["output"]
            if spec.output is not None:
                output = self._pure(None, spec.output, context)
            result = ToolRunResult(status=ToolRunStatus.succeeded, output=output)
        except StepFailed as exc:
            result = ToolRunResult(
                status=ToolRunStatus.failed,
                error=f"step {exc.step}: {exc.message}",
                failed_step=exc.step,
            )
        except asyncio.CancelledError:
            await self._finish(ToolRunResult(status=ToolRunStatus.cancelled, error="cancelled"))
            raise
        await self._finish(result)
        return result

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
            ),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"run {result.status.value}",
        )

    async def _run_step(self, position: int, step: Step, context: dict[str, Any]) -> dict[str, Any]:
        if step.if_ is not None and not self._condition(step, context):
            self._record(
                StepRecord(
                    position=position, name=step.name, type=step.type, status=StepStatus.skipped
                )
            )
            return {"output": None, "status": StepStatus.skipped.value, "error": None}
        if step.foreach is None:
            output, error = await self._attempt(position, -1, step, context)
            status = StepStatus.failed if error else StepStatus.succeeded
            return {"output": output, "status": status.value, "error": error}

        items = self._pure(
            step, step.foreach if "{{" in step.foreach else "{{ " + step.foreach + " }}", context
        )
        if not isinstance(items, list):
            raise StepFailed(step.name, f"foreach must give a list, got {type(items).__name__}")
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
        """Runs one step (or one foreach item); returns (output, error) when the step may
        continue on error, raises StepFailed when it may not."""
        started = workflow.now()
        try:
            output = await self._execute(position, item, step, context)
        except StepFailed as exc:
            duration = int((workflow.now() - started).total_seconds() * 1000)
            self._record(
                StepRecord(
                    position=position,
                    item=item,
                    name=step.name,
                    type=step.type,
                    status=StepStatus.failed,
                    error=exc.message,
                    duration_ms=duration,
                )
            )
            if step.continue_on_error:
                return None, exc.message
            raise
        duration = int((workflow.now() - started).total_seconds() * 1000)
        self._record(
            StepRecord(
                position=position,
                item=item,
                name=step.name,
                type=step.type,
                status=StepStatus.succeeded,
                output=output,
                duration_ms=duration,
            )
        )
        return output, None

    async def _execute(self, position: int, item: int, step: Step, context: dict[str, Any]) -> Any:
        if isinstance(step, TemplateStep):
            return self._pure(step, step.template, context)
        if isinstance(step, TransformStep):
            value = self._pure(step, step.input, context)
            try:
                return jmespath.search(step.expression, value)
            except jmespath.exceptions.JMESPathError as exc:
                raise StepFailed(step.name, f"transform failed: {exc}") from exc
        if isinstance(step, DelayStep):
            await workflow.sleep(timedelta(seconds=step.seconds), summary=f"step {step.name}")
            return None
        if isinstance(step, ToolCallStep):
            return await self._call_tool(step, context)
        return await self._activity(position, item, step, context)

    def _pure(self, step: Step | None, template: str, context: dict[str, Any]) -> Any:
        try:
            return templating.render(template, context, budget=self._budget)
        except templating.TemplateError as exc:
            raise StepFailed(step.name if step else "output", str(exc)) from exc

    def _condition(self, step: Step, context: dict[str, Any]) -> bool:
        try:
            return templating.truthy(step.if_ or "", context, budget=self._budget)
        except templating.TemplateError as exc:
            raise StepFailed(step.name, f"if: {exc}") from exc

    async def _call_tool(self, step: ToolCallStep, context: dict[str, Any]) -> Any:
        run = self._run
        if run.depth >= MAX_TOOL_DEPTH:
            raise StepFailed(step.name, f"tools call each other more than {MAX_TOOL_DEPTH} deep")
        spec = run.specs.get(step.tool_id)
        if spec is None:
            raise StepFailed(step.name, f"tool {step.tool_id} is not part of this run")
        try:
            rendered = templating.render_tree(step.params, context, budget=self._budget)
            params = validate_params(spec, rendered)
        except templating.TemplateError as exc:
            raise StepFailed(step.name, str(exc)) from exc
        except BatonError as exc:
            raise StepFailed(step.name, exc.message) from exc
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
            raise StepFailed(step.name, f"tool {spec.name} failed: {exc.cause or exc}") from exc
        if result.status is not ToolRunStatus.succeeded:
            raise StepFailed(step.name, f"tool {spec.name}: {result.error}")
        return result.output

    async def _activity(self, position: int, item: int, step: Step, context: dict[str, Any]) -> Any:
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
        name, heartbeat = _ACTIVITIES[step.type]
        try:
            outcome: StepOutcome = await workflow.execute_activity(
                name,
                call,
                result_type=StepOutcome,
                start_to_close_timeout=timedelta(seconds=step.timeout_seconds),
                heartbeat_timeout=heartbeat,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=500),
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=step.retries + 1,
                ),
                summary=_summary(step, item),
            )
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                # The run itself was cancelled: end as cancelled, not as a failed step.
                raise asyncio.CancelledError() from exc
            raise StepFailed(step.name, _cause(exc)) from exc
        return outcome.output

    def _record(self, record: StepRecord) -> None:
        self._records.append(record)


_HEARTBEAT = timedelta(seconds=10)
_ACTIVITIES: dict[str, tuple[str, timedelta | None]] = {
    "llm": (activity_names.STEP_LLM, _HEARTBEAT),
    "http": (activity_names.STEP_HTTP, _HEARTBEAT),
    "code": (activity_names.STEP_CODE, _HEARTBEAT),
    "knowledge_search": (activity_names.STEP_KNOWLEDGE_SEARCH, None),
    "knowledge_insert": (activity_names.STEP_KNOWLEDGE_INSERT, None),
    "knowledge_update": (activity_names.STEP_KNOWLEDGE_UPDATE, None),
    "knowledge_delete": (activity_names.STEP_KNOWLEDGE_DELETE, None),
}


def _summary(step: Step, item: int) -> str:
    suffix = f" [{item}]" if item >= 0 else ""
    if isinstance(step, HttpStep):
        host = urlsplit(step.url).hostname or step.url[:60]
        return f"step {step.name}{suffix}: http {step.method} {host}"
    if isinstance(step, LlmStep):
        return f"step {step.name}{suffix}: llm {step.model}"
    if isinstance(step, CodeStep):
        return f"step {step.name}{suffix}: code"
    if isinstance(step, KnowledgeStepBase):
        return f"step {step.name}{suffix}: {step.type} {step.knowledge_set}"
    return f"step {step.name}{suffix}: {step.type}"


def _cause(exc: ActivityError) -> str:
    cause: BaseException | None = exc.cause
    while isinstance(cause, FailureError) and not isinstance(cause, ApplicationError):
        if cause.cause is None:
            break
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
