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
from collections.abc import Callable
from typing import Any

import httpx
import jmespath
import jmespath.exceptions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import as_application_error
from activities.steps import AnswerSink, ChargerFor, InProcessExecutor, StepRunner
from baton import templating
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import knowledge_jobs as job_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import secrets as secret_repo
from baton.db.repositories.knowledge_rows import RowResult
from baton.domain.credits import LlmCharge, PlanBook, enrichment_step_key
from baton.domain.enrichment import BatchOutcome, EnrichmentBatch, EnrichmentFinish, EnrichmentPlan
from baton.domain.knowledge import ColumnType, JobStatus, KnowledgeColumn
from baton.domain.llm import TokenUsage
from baton.domain.tool_checks import needs_secrets, validate_params
from baton.domain.tools import LlmStep, Step
from baton.errors import BatonError
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.services.provider_configs import ProviderConfigResolver
from baton.settings import Settings
from baton.steps.engine import StepEngine, StepError

# Finished rows are written together at this pace: one transaction for many rows, and a
# crash loses at most this much work.
FLUSH_EVERY_S = 0.25
MAX_ERROR_CHARS = 2000


class RowFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RowTool:
    """A tool's steps for one row, in this process: the step interpreter that runs a tool run
    (baton/steps/engine.py), with an executor that calls the steps' code directly, retrying
    as their activities would be retried. Only the kinds allowed in an enrichment
    (`StepKind.in_enrichment`) get here: a job with any other is refused when created."""

    def __init__(
        self,
        plan: EnrichmentPlan,
        runner: StepRunner,
        client: httpx.AsyncClient,
        secrets: dict[str, str],
        charger_for: Callable[[int], ChargerFor | None] = lambda row_id: None,
    ) -> None:
        """`charger_for`: who charges the `llm` steps of a row (by its id)."""
        self._charger_for = charger_for
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
        executor = InProcessExecutor(
            self._runner,
            key_prefix=f"enrich:{plan.job_id}:{row_id}",
            secrets=self._secrets,
            scrubber=self._scrubber,
            project_id=plan.project_id,
            client=self._client,
            charger_for=self._charger_for(row_id),
        )
        context: dict[str, Any] = {"params": params, "steps": {}, "snippets": plan.snippets}
        try:
            return await StepEngine(executor, budget=budget).run(plan.tool, context)
        except StepError as exc:
            where = f"step {exc.step}" if exc.step else "output"
            raise RowFailed(f"{where}: {exc.message}") from exc


class EnrichmentActivities:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        provider_configs: ProviderConfigResolver,
        plans: PlanBook | None = None,
    ) -> None:
        """`plans`: what an `llm` step on the installation's key costs the job's organisation
        (None: not metered)."""
        self._sessions = session_factory
        self._runner = StepRunner(settings, provider_configs)
        self._box = SecretBox.from_settings(settings)
        self._plans = plans

    @activity.defn(name="baton.enrichment.batch")
    async def batch(self, batch: EnrichmentBatch) -> BatchOutcome:
        plan, progress = batch.plan, batch.progress
        try:
            async with self._sessions() as session:
                rows = await row_repo.read_batch(
                    session=session,
                    set_id=plan.set_id,
                    after_row_id=progress.after_row_id,
                    last_row_id=plan.last_row_id,
                    limit=plan.batch_size,
                )
                # The set after its rows: one deleted between the two reads is then not
                # found, rather than a set with no rows left, which would end the job
                # as succeeded.
                columns = await set_repo.set_columns(session=session, set_id=plan.set_id)
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
        # What the rows' `llm` steps answered on the installation's key: charged with the
        # next write of results (one read of the totals for all of them).
        answered: list[LlmCharge] = []

        async def flush() -> None:
            taken, charges = finished[:], answered[:]
            if not taken and not charges:
                activity.heartbeat({"done": counts.done, "failed": counts.failed})
                return
            async with self._sessions.begin() as session:
                if charges and self._plans is not None:
                    await credit_repo.charge_llm_calls(
                        session=session,
                        plans=self._plans,
                        project_id=plan.project_id,
                        calls=charges,
                    )
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
            del answered[: len(charges)]
            activity.heartbeat({"done": counts.done, "failed": counts.failed})

        async with self._runner.http_client() as client:
            secrets = await self._secrets(plan)
            tool = RowTool(plan, self._runner, client, secrets, self._row_charger(plan, answered))
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

    def _row_charger(
        self, plan: EnrichmentPlan, answered: list[LlmCharge]
    ) -> Callable[[int], ChargerFor | None]:
        """Each row's `llm` steps are charged once per row and step, as a tool run's are:
        their answers on the installation's key go to `answered`."""
        if self._plans is None:
            return lambda row_id: None

        def for_row(row_id: int) -> ChargerFor:
            def charger(step: Step, position: int, item: int) -> AnswerSink | None:
                if not isinstance(step, LlmStep):
                    return None
                key = enrichment_step_key(plan.job_id, row_id, position, item)
                model = step.model

                async def collect(usage: TokenUsage, billed: bool) -> None:
                    if billed:
                        answered.append(
                            LlmCharge(
                                key=key,
                                model=model,
                                input_tokens=usage.input_tokens,
                                output_tokens=usage.output_tokens,
                                cached_input_tokens=usage.cached_input_tokens,
                            )
                        )

                return collect

            return charger

        return for_row

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
