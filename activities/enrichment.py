"""Enrichment batches: one activity runs the tool for each row of a batch, in this process and
concurrently, and writes each row's result as soon as it is in (a few rows per transaction).

Idempotent under retries: a row already enriched is skipped, so an attempt after a crash
redoes only the rows the crash lost; their http steps send the same Idempotency-Key
(`enrich:<job>:<row>:<step>`) as before, so a receiver that honours it acts once per row.
Secrets are revealed here, once per batch, for http steps only, and scrubbed from what is
written."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jmespath
import jmespath.exceptions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.steps import StepRunner
from baton import templating
from baton.db.repositories import knowledge_jobs as job_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import secrets as secret_repo
from baton.db.repositories.knowledge_rows import RowResult
from baton.domain.enrichment import BatchOutcome, EnrichmentBatch, EnrichmentFinish, EnrichmentPlan
from baton.domain.knowledge import ColumnType, JobStatus, KnowledgeColumn
from baton.domain.tool_checks import needs_secrets, validate_params
from baton.domain.tools import (
    CodeStep,
    HttpStep,
    LlmStep,
    Step,
    TemplateStep,
    TransformStep,
)
from baton.errors import BatonError
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.services.provider_configs import ProviderConfigResolver
from baton.settings import Settings

# Finished rows are written together at this pace: one transaction for many rows, and a
# crash loses at most this much work.
FLUSH_EVERY_S = 0.25
MAX_ERROR_CHARS = 2000


class RowFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RowTool:
    """A tool's steps for one row, in this process: what ToolRunWorkflow does in a workflow,
    for the step types a row tool may have (template, transform, http, llm, code), with each
    step's `if`, `foreach`, `continue_on_error`, `retries` and `timeout_seconds`."""

    def __init__(
        self,
        plan: EnrichmentPlan,
        runner: StepRunner,
        client: httpx.AsyncClient,
        secrets: dict[str, str],
    ) -> None:
        self._plan = plan
        self._runner = runner
        self._client = client
        self._secrets = secrets
        self._scrubber = SecretScrubber(secrets)

    async def run(self, row_id: int, row: dict[str, Any]) -> Any:
        plan = self._plan
        # One budget for the row's templates, as a tool run has: they all render on the
        # worker's event loop.
        budget = templating.Budget(templating.TOOL_RUN_WORK, scope="this row's templates")
        try:
            params = validate_params(
                plan.tool,
                {
                    name: source.value(row_id, row, budget=budget)
                    for name, source in plan.input_mapping.items()
                },
            )
        except (templating.TemplateError, BatonError) as exc:
            raise RowFailed(f"input: {getattr(exc, 'message', exc)}") from exc
        context: dict[str, Any] = {"params": params, "steps": {}, "snippets": plan.snippets}
        output: Any = None
        for step in plan.tool.steps:
            result = await self._step(row_id, step, context, budget)
            context["steps"][step.name] = result
            output = result["output"]
        if plan.tool.output is not None:
            output = _pure("output", plan.tool.output, context, budget)
        return output

    async def _step(
        self, row_id: int, step: Step, context: dict[str, Any], budget: templating.Budget
    ) -> dict[str, Any]:
        if step.if_ is not None and not _condition(step, context, budget):
            return {"output": None, "status": "skipped", "error": None}
        if step.foreach is None:
            output, error = await self._attempt(row_id, -1, step, context, budget)
            return {"output": output, "status": "failed" if error else "succeeded", "error": error}
        foreach = step.foreach if "{{" in step.foreach else "{{ " + step.foreach + " }}"
        items = _pure(f"step {step.name}", foreach, context, budget)
        if not isinstance(items, list):
            raise RowFailed(f"step {step.name}: foreach must give a list")
        gate = asyncio.Semaphore(step.concurrency)

        async def one(index: int, item: Any) -> tuple[Any, str | None]:
            async with gate:
                scoped = {**context, "foreach": {"item": item, "index": index}}
                return await self._attempt(row_id, index, step, scoped, budget)

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        errors = [error for _, error in results if error]
        return {
            "output": [output for output, _ in results],
            "status": "failed" if errors else "succeeded",
            "error": errors[0] if errors else None,
            "errors": [error for _, error in results],
        }

    async def _attempt(
        self,
        row_id: int,
        item: int,
        step: Step,
        context: dict[str, Any],
        budget: templating.Budget,
    ) -> tuple[Any, str | None]:
        try:
            return await self._with_retries(row_id, item, step, context, budget), None
        except RowFailed as exc:
            if step.continue_on_error:
                return None, exc.message
            raise

    async def _with_retries(
        self,
        row_id: int,
        item: int,
        step: Step,
        context: dict[str, Any],
        budget: templating.Budget,
    ) -> Any:
        if isinstance(step, TemplateStep):
            return _pure(f"step {step.name}", step.template, context, budget)
        if isinstance(step, TransformStep):
            value = _pure(f"step {step.name}", step.input, context, budget)
            try:
                return jmespath.search(step.expression, value)
            except jmespath.exceptions.JMESPathError as exc:
                raise RowFailed(f"step {step.name}: transform failed: {exc}") from exc
        key = f"enrich:{self._plan.job_id}:{row_id}:{step.name}" + (f":{item}" if item >= 0 else "")
        delay = 0.5
        for attempt in range(step.retries + 1):
            try:
                async with asyncio.timeout(step.timeout_seconds):
                    output = await self._io(step, context, key)
                return self._scrubber.value(output)
            except TimeoutError:
                error = ApplicationError(f"no result within {step.timeout_seconds:g}s")
            except BatonError as exc:
                error = as_application_error(exc)
            except ApplicationError as exc:
                error = exc
            except RowFailed:
                raise
            except Exception as exc:  # its message may quote what was sent: scrubbed below
                error = ApplicationError(str(exc), type=type(exc).__name__)
            if error.non_retryable or attempt == step.retries:
                message = self._scrubber.text(error.message)
                raise RowFailed(f"step {step.name}: {message}")
            await asyncio.sleep(_retry_delay(error, delay))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    async def _io(self, step: Step, context: dict[str, Any], key: str) -> Any:
        if isinstance(step, HttpStep):
            return await self._runner.http(
                step,
                {**context, "secrets": self._secrets},
                idempotency_key=key,
                scrubber=self._scrubber,
                client=self._client,
            )
        if isinstance(step, LlmStep):
            return await self._runner.llm(step, context)
        if isinstance(step, CodeStep):
            return await self._runner.code(step, context)
        raise RowFailed(f"step {step.name}: {step.type} steps cannot run in an enrichment")


class EnrichmentActivities:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        provider_configs: ProviderConfigResolver,
    ) -> None:
        self._sessions = session_factory
        self._runner = StepRunner(settings, provider_configs)
        self._box = SecretBox.from_settings(settings)

    @activity.defn(name="baton.enrichment.batch")
    async def batch(self, batch: EnrichmentBatch) -> BatchOutcome:
        plan, progress = batch.plan, batch.progress
        try:
            async with self._sessions() as session:
                columns = await set_repo.set_columns(session=session, set_id=plan.set_id)
                rows = await row_repo.read_batch(
                    session=session,
                    set_id=plan.set_id,
                    after_row_id=progress.after_row_id,
                    last_row_id=plan.last_row_id,
                    limit=plan.batch_size,
                )
        except BatonError as exc:
            raise as_application_error(exc) from None
        counts = _Counts(
            done=sum(1 for _, data in rows if plan.is_enriched(data) and not _failed(plan, data)),
            failed=sum(1 for _, data in rows if _failed(plan, data)),
        )
        pending = [(row_id, data) for row_id, data in rows if not plan.is_enriched(data)]
        if pending:
            await self._enrich(plan, progress.done, progress.failed, columns, pending, counts)
        return BatchOutcome(
            last_row_id=rows[-1][0] if rows else progress.after_row_id,
            rows=len(rows),
            done=counts.done,
            failed=counts.failed,
            exhausted=len(rows) < plan.batch_size,
        )

    # Run as a local activity: one short write when the job ends.
    @activity.defn(name="baton.enrichment.finish")
    async def finish(self, finish: EnrichmentFinish) -> None:
        progress = finish.progress
        async with self._sessions.begin() as session:
            await job_repo.finish_enrichment_job(
                session=session,
                job_id=finish.job_id,
                status=finish.status,
                done=progress.done if progress else None,
                failed=progress.failed if progress else None,
                error=finish.error,
            )

    async def _enrich(
        self,
        plan: EnrichmentPlan,
        done_before: int,
        failed_before: int,
        columns: list[KnowledgeColumn],
        pending: list[tuple[int, dict[str, Any]]],
        counts: _Counts,
    ) -> None:
        finished: list[RowResult] = []

        async def flush() -> None:
            taken = finished[:]
            if not taken:
                activity.heartbeat({"done": counts.done, "failed": counts.failed})
                return
            async with self._sessions.begin() as session:
                await row_repo.write_results(
                    session=session, set_id=plan.set_id, columns=columns, results=taken
                )
                counts.add(taken)
                await job_repo.set_enrichment_progress(
                    session=session,
                    job_id=plan.job_id,
                    done=done_before + counts.done,
                    failed=failed_before + counts.failed,
                    status=JobStatus.running,
                )
            del finished[: len(taken)]
            activity.heartbeat({"done": counts.done, "failed": counts.failed})

        async with self._runner.http_client() as client:
            tool = RowTool(plan, self._runner, client, await self._secrets(plan))
            gate = asyncio.Semaphore(plan.concurrency)

            async def one(row_id: int, data: dict[str, Any]) -> None:
                async with gate:
                    finished.append(await _row_result(plan, tool, columns, row_id, data))

            rows = asyncio.gather(*(one(row_id, data) for row_id, data in pending))
            try:
                while not rows.done():
                    await asyncio.wait({rows}, timeout=FLUSH_EVERY_S)
                    await flush()
                rows.result()
                await flush()  # rows that finished during the last flush
            except asyncio.CancelledError:
                # Cancelled (the job, or the worker shutting down): keep the rows done.
                rows.cancel()
                await asyncio.gather(rows, return_exceptions=True)
                await flush()
                raise

    async def _secrets(self, plan: EnrichmentPlan) -> dict[str, str]:
        if not any(needs_secrets(step) for step in plan.tool.steps):
            return {}
        async with self._sessions() as session:
            return await secret_repo.reveal_secrets(
                session=session, box=self._box, project_id=plan.project_id
            )


class _Counts:
    def __init__(self, done: int, failed: int) -> None:
        self.done = done
        self.failed = failed

    def add(self, results: list[RowResult]) -> None:
        failed = sum(1 for result in results if result.failed)
        self.failed += failed
        self.done += len(results) - failed


async def _row_result(
    plan: EnrichmentPlan,
    tool: RowTool,
    columns: list[KnowledgeColumn],
    row_id: int,
    data: dict[str, Any],
) -> RowResult:
    """The row's new values; a failure is recorded in its error column, never raised."""
    declared = {column.name: column for column in columns}
    try:
        output = await tool.run(row_id, data)
        values = {
            column: _fit(declared.get(column), jmespath.search(expression, output))
            for column, expression in plan.output_mapping.items()
        }
    except RowFailed as exc:
        return _row_error(plan, row_id, exc.message)
    except jmespath.exceptions.JMESPathError as exc:
        return _row_error(plan, row_id, f"output: {exc}")
    return RowResult(row_id=row_id, values=values, failed=False)


def _fit(column: KnowledgeColumn | None, value: Any) -> Any:
    """A value in the form its declared column takes: structured output becomes JSON text in
    a text column; a value of another type in a typed column fails the row."""
    if column is None or value is None or column.type is ColumnType.json:
        return value
    if column.type is ColumnType.text:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    is_bool = isinstance(value, bool)
    fits = {
        ColumnType.boolean: is_bool,
        ColumnType.integer: isinstance(value, int) and not is_bool,
        ColumnType.number: isinstance(value, int | float) and not is_bool,
    }[column.type]
    if not fits:
        raise RowFailed(f"output {column.name}: {column.type.value} expected, got {value!r:.100}")
    return value


def _row_error(plan: EnrichmentPlan, row_id: int, message: str) -> RowResult:
    return RowResult(
        row_id=row_id, values={plan.error_column: message[:MAX_ERROR_CHARS]}, failed=True
    )


def _failed(plan: EnrichmentPlan, data: dict[str, Any]) -> bool:
    return data.get(plan.error_column) not in (None, "")


def _pure(where: str, template: str, context: dict[str, Any], budget: templating.Budget) -> Any:
    try:
        return templating.render(template, context, budget=budget)
    except templating.TemplateError as exc:
        raise RowFailed(f"{where}: {exc}") from exc


def _condition(step: Step, context: dict[str, Any], budget: templating.Budget) -> bool:
    try:
        return templating.truthy(step.if_ or "", context, budget=budget)
    except templating.TemplateError as exc:
        raise RowFailed(f"step {step.name}: if: {exc}") from exc


def _retry_delay(error: ApplicationError, default: float) -> float:
    if error.next_retry_delay is not None:
        return error.next_retry_delay.total_seconds()
    return default
