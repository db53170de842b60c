"""The step interpreter (baton/steps/engine.py) and the registry of step kinds, without
Temporal: an executor of the test's own stands for the workflow's activities, and the
in-process executor an enrichment uses runs over a runner whose steps the test scripts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.steps import InProcessExecutor, StepEnv, StepRunner
from baton import activity_names, templating
from baton.domain.tool_runs import StepRecord
from baton.domain.tools import Step, ToolSpec
from baton.scrubbing import SecretScrubber
from baton.services.provider_configs import no_provider_configs
from baton.settings import Settings
from baton.steps.engine import StepEngine, StepError
from baton.steps.registry import ENRICHMENT_STEP_TYPES, STEP_KINDS, StepKind


def tool(*steps: dict[str, Any], output: str | None = None) -> ToolSpec:
    return ToolSpec.model_validate(
        {
            "name": "t",
            "params": [{"name": "x", "required": False}],
            "steps": steps,
            "output": output,
        }
    )


class Executor:
    """Answers each step with `answers[name]` (a value, or an exception to raise), counting
    how many run at once."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []
        self.running = 0
        self.most = 0

    async def execute(
        self, step: Step, kind: StepKind[Any], context: dict[str, Any], *, position: int, item: int
    ) -> Any:
        self.calls.append((step.name, item))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.001)
            answer = self.answers[step.name]
            if isinstance(answer, Exception):
                raise answer
            return answer(context) if callable(answer) else answer
        finally:
            self.running -= 1


class Observer:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.records: list[StepRecord] = []

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    def started(self, step: Step) -> None:
        self.steps.append(step.name)

    def recorded(self, record: StepRecord) -> None:
        self.records.append(record)


async def run(spec: ToolSpec, executor: Any, observer: Any = None, **params: Any) -> Any:
    engine = StepEngine(executor, budget=templating.Budget(), observer=observer)
    return await engine.run(spec, {"params": params, "steps": {}, "snippets": {}})


def test_every_step_model_has_one_kind_and_every_activity_a_registered_name():
    names = {v for k, v in vars(activity_names).items() if k.startswith("STEP_")}
    assert {kind.activity for kind in STEP_KINDS.values() if kind.activity} == names
    for kind in STEP_KINDS.values():
        # A kind runs in one place; only one that needs no workflow runs in an enrichment.
        assert not (kind.compute and kind.activity)
        assert not (kind.runs_in_workflow_only and kind.in_enrichment)
    # Knowledge steps would write to sets while a set is being enriched.
    assert not ENRICHMENT_STEP_TYPES & {t for t in STEP_KINDS if t.startswith("knowledge_")}
    # Only http is given secrets (it sends them out): a new kind that reads them is a choice.
    assert {t for t, kind in STEP_KINDS.items() if kind.reads_secrets} == {"http"}


async def test_steps_run_in_order_and_read_the_outputs_before_them():
    executor = Executor(ask=lambda context: f"asked {context['steps']['greet']['output']}")
    spec = tool(
        {"name": "greet", "type": "template", "template": "hi {{ params.x }}"},
        {"name": "ask", "type": "llm", "prompt": "{{ steps.greet.output }}"},
        {
            "name": "shape",
            "type": "transform",
            "input": "{{ [steps.ask.output] }}",
            "expression": "[0]",
        },
        output="{{ steps.shape.output }}!",
    )
    assert await run(spec, executor, x="Ada") == "asked hi Ada!"
    # Pure steps never reach the executor.
    assert executor.calls == [("ask", -1)]


async def test_a_false_if_skips_the_step_and_records_it():
    observer = Observer()
    spec = tool(
        {"name": "maybe", "type": "llm", "prompt": "p", "if": "params.x == 'go'"},
        {"name": "after", "type": "template", "template": "{{ steps.maybe.status }}"},
    )
    assert await run(spec, Executor(), observer, x="stop") == "skipped"
    assert observer.steps == ["maybe", "after"]
    assert [(r.name, r.status.value) for r in observer.records] == [
        ("maybe", "skipped"),
        ("after", "succeeded"),
    ]


async def test_foreach_runs_every_item_in_order_at_most_concurrency_at_a_time():
    executor = Executor(each=lambda context: context["foreach"]["item"] * 10)
    spec = tool(
        {"name": "each", "type": "llm", "prompt": "p", "foreach": "params.x", "concurrency": 2}
    )
    assert await run(spec, executor, x=[1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]
    assert executor.calls == [("each", i) for i in range(5)]
    assert executor.most == 2


async def test_a_failed_step_fails_the_run_naming_it_unless_it_may_continue():
    failing = StepError("HTTP 500 from x")
    with pytest.raises(StepError) as raised:
        await run(
            tool({"name": "call", "type": "http", "url": "https://x"}), Executor(call=failing)
        )
    assert (raised.value.step, raised.value.message) == ("call", "HTTP 500 from x")

    spec = tool(
        {"name": "call", "type": "http", "url": "https://x", "continue_on_error": True},
        {"name": "next", "type": "template", "template": "{{ steps.call.error }}"},
    )
    observer = Observer()
    assert await run(spec, Executor(call=failing), observer) == "HTTP 500 from x"
    assert observer.records[0].status.value == "failed"


async def test_template_foreach_and_output_failures_name_where_they_were():
    cases = [
        (tool({"name": "a", "type": "template", "template": "{{ 1 / 0 }}"}), "a"),
        (tool({"name": "a", "type": "llm", "prompt": "p", "foreach": "params.x"}), "a"),
        (
            tool({"name": "a", "type": "transform", "input": "{{ 1 }}", "expression": "abs(@, @)"}),
            "a",
        ),
        (tool({"name": "a", "type": "template", "template": "1"}, output="{{ 1 / 0 }}"), None),
    ]
    for spec, where in cases:
        with pytest.raises(StepError) as raised:
            await run(spec, Executor(a="out"), x="not a list")
        assert raised.value.step == where, raised.value.message
    with pytest.raises(StepError, match="foreach must give a list, got str"):
        await run(cases[1][0], Executor(), x="not a list")


class ScriptedRunner(StepRunner):
    """Runs llm steps only, answering each attempt from `attempts` in turn."""

    def __init__(self, *attempts: Any) -> None:
        super().__init__(Settings(), no_provider_configs)
        self.attempts = list(attempts)
        self.envs: list[StepEnv] = []
        self.contexts: list[dict[str, Any]] = []

    def runs(self, step: Step) -> bool:
        return step.type in ("llm", "http")

    async def run(self, step: Step, context: dict[str, Any], env: StepEnv) -> Any:
        self.envs.append(env)
        self.contexts.append(context)
        answer = self.attempts.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if answer == "hang":
            await asyncio.sleep(10)
        return answer


def in_process(runner: StepRunner, secrets: dict[str, str] | None = None) -> InProcessExecutor:
    secrets = secrets or {}
    return InProcessExecutor(
        runner, key_prefix="enrich:j:7", secrets=secrets, scrubber=SecretScrubber(secrets)
    )


SOON = timedelta(milliseconds=1)


async def test_in_process_a_step_is_retried_as_its_activity_would_be():
    runner = ScriptedRunner(
        ApplicationError("busy", next_retry_delay=SOON), RuntimeError("reset"), "done"
    )
    spec = tool({"name": "ask", "type": "llm", "prompt": "p", "retries": 2, "foreach": "params.x"})
    assert await run(spec, in_process(runner), x=["only"]) == ["done"]
    # The same idempotency key on every attempt.
    assert {env.idempotency_key for env in runner.envs} == {"enrich:j:7:ask:0"}
    assert len(runner.envs) == 3


async def test_in_process_a_non_retryable_failure_or_the_last_attempt_fails_the_step():
    once = ScriptedRunner(ApplicationError("bad request", non_retryable=True), "never")
    with pytest.raises(StepError, match="bad request"):
        await run(tool({"name": "ask", "type": "llm", "prompt": "p"}), in_process(once))
    assert len(once.envs) == 1

    hangs = ScriptedRunner("hang")
    spec = tool(
        {"name": "ask", "type": "llm", "prompt": "p", "retries": 0, "timeout_seconds": 0.05}
    )
    with pytest.raises(StepError, match=r"no result within 0\.05s"):
        await run(spec, in_process(hangs))


async def test_in_process_only_a_kind_that_reads_secrets_gets_them_and_errors_are_scrubbed():
    secret = "s3cret-value-123456"
    runner = ScriptedRunner("ok", ApplicationError(f"denied for {secret}", non_retryable=True))
    spec = tool(
        {"name": "ask", "type": "llm", "prompt": "p"},
        {"name": "call", "type": "http", "url": "https://x/{{ secrets.k }}"},
    )
    with pytest.raises(StepError) as raised:
        await run(spec, in_process(runner, {"k": secret}))
    assert secret not in raised.value.message
    assert ["secrets" in context for context in runner.contexts] == [False, True]


async def test_in_process_a_kind_the_runner_does_not_run_fails_its_step():
    spec = tool({"name": "look", "type": "knowledge_search", "knowledge_set": "s", "query": "q"})
    with pytest.raises(StepError, match="knowledge_search steps cannot run here"):
        await run(spec, in_process(ScriptedRunner()))
