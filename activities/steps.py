"""The I/O steps of a tool run that need no database (llm, http, code), run here in two ways:
as the activities a tool run's workflow calls, and in process for an enrichment batch
(`InProcessExecutor`), and the run's final write. A step's secrets (only a kind that reads
secrets is given any: http) are resolved here, rendered into its request, and scrubbed from
what comes back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.heartbeats import with_heartbeats
from activities.llm import provider_failure
from baton import templating
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import secrets as secret_repo
from baton.db.repositories import tool_runs as run_repo
from baton.domain.credits import LlmCharge, PlanBook, tool_run_step_key
from baton.domain.llm import LlmRequest, Message, MessageRole, TokenUsage
from baton.domain.tool_runs import StepCall, StepOutcome, ToolRunFinish
from baton.domain.tools import CodeStep, HttpStep, LlmStep, Step
from baton.errors import BatonError
from baton.integrations import code_runner, http
from baton.integrations import llm as llm_provider
from baton.integrations.sandbox import SandboxUnavailable
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.services.provider_configs import ProviderConfigResolver
from baton.settings import CodeSandbox, Settings
from baton.steps.engine import StepError
from baton.steps.registry import StepKind, kind_of

NO_SECRETS = SecretScrubber({})
# Told of each answer an `llm` step got: its usage, and whether it ran on the installation's
# own key (what vendor credits pay for) rather than a project's integration.
AnswerSink = Callable[[TokenUsage, bool], Awaitable[None]]


@dataclass(frozen=True)
class StepEnv:
    """What a step run here may use besides its context: the key that makes its request
    idempotent across retries (the same on every retry of the same request), the scrubber of
    the secrets it was given, the project whose integrations it may use (None: the server's
    keys), an HTTP client to share, and who is told of an `llm` step's answer (to charge it)."""

    idempotency_key: str
    scrubber: SecretScrubber = NO_SECRETS
    project_id: str | None = None
    client: httpx.AsyncClient | None = None
    on_answer: AnswerSink | None = None


# Who charges the `llm` step at (position, foreach item) of the steps being run, if anyone.
ChargerFor = Callable[[Step, int, int], AnswerSink | None]


class StepActivities:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        provider_configs: ProviderConfigResolver,
        plans: PlanBook | None = None,
    ) -> None:
        """`plans`: what an `llm` step on the installation's key costs the run's
        organisation (None: not metered)."""
        self._sessions = session_factory
        self._box = SecretBox.from_settings(settings)
        self._runner = StepRunner(settings, provider_configs)
        self._plans = plans

    @activity.defn(name="baton.step.llm")
    async def llm(self, call: StepCall) -> StepOutcome:
        return await self._step(call)

    @activity.defn(name="baton.step.http")
    async def http(self, call: StepCall) -> StepOutcome:
        return await self._step(call)

    @activity.defn(name="baton.step.code")
    async def code(self, call: StepCall) -> StepOutcome:
        return await self._step(call)

    async def _step(self, call: StepCall) -> StepOutcome:
        kind = kind_of(call.step)
        assert activity.info().activity_type == kind.activity, call.step.type
        secrets = await self._secrets(call) if call.needs_secrets else {}
        scrubber = SecretScrubber(secrets)
        context = {**call.context, "secrets": secrets} if kind.reads_secrets else call.context
        # The same on every retry of this step: a receiver that honours it (as payment and
        # messaging APIs do) acts once even when a crash makes us send the request again.
        info = activity.info()
        charges: list[LlmCharge] = []
        env = StepEnv(
            idempotency_key=f"{info.workflow_id}:{info.activity_id}",
            scrubber=scrubber,
            project_id=call.project_id,
            on_answer=self._charger(call, charges),
        )
        try:
            outcome = await self._run(self._runner.run(call.step, context, env), scrubber)
        except BaseException:
            await self._pay(call, charges)  # a call made is paid for, whatever its answer
            raise
        if call.persist:
            # The run's last write charges them, with every other step's, in its transaction.
            outcome.charges = charges
        else:
            await self._pay(call, charges)  # a tool step's run has no write of its own
        return outcome

    def _charger(self, call: StepCall, charges: list[LlmCharge]) -> AnswerSink | None:
        """Collects what a tool run's `llm` step answered on the installation's key, to be
        charged once per step execution (keyed by the run, the step's position and its
        foreach item): a retried attempt calls the model again but is not charged again."""
        step = call.step
        if self._plans is None or not isinstance(step, LlmStep):
            return None
        key = tool_run_step_key(call.run_id, call.position, call.item)

        async def collect(usage: TokenUsage, billed: bool) -> None:
            if billed:
                charge = LlmCharge(
                    key=key,
                    model=step.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                )
                charges[:] = [charge]

        return collect

    async def _pay(self, call: StepCall, charges: list[LlmCharge]) -> None:
        if not charges or self._plans is None:
            return
        async with self._sessions.begin() as session:
            await credit_repo.charge_llm_calls(
                session=session, plans=self._plans, project_id=call.project_id, calls=charges
            )

    async def _run(self, work: Awaitable[Any], scrubber: SecretScrubber) -> StepOutcome:
        """Runs the step with heartbeats; what it gives back, output or error, is scrubbed."""
        try:
            output = await with_heartbeats(work)
        except BatonError as exc:
            raise scrubber.error(as_application_error(exc)) from None
        except ApplicationError as exc:
            raise scrubber.error(exc) from None
        except Exception as exc:
            # Failed as Temporal would fail it (retryable, typed by its class), but its
            # message may quote what was sent.
            raise scrubber.error(ApplicationError(str(exc), type=type(exc).__name__)) from None
        return StepOutcome(output=scrubber.value(output))

    async def _secrets(self, call: StepCall) -> dict[str, str]:
        async with self._sessions() as session:
            return await secret_repo.reveal_secrets(
                session=session, box=self._box, project_id=call.project_id
            )


class StepRunner:
    """Runs one llm, http or code step in this process: a step activity runs one, an
    enrichment batch runs the steps of many rows. Only an http step reads secrets, from
    `context["secrets"]`; the others are never given any."""

    def __init__(self, settings: Settings, provider_configs: ProviderConfigResolver) -> None:
        self._settings = settings
        self._egress = http.EgressPolicy.from_settings(settings)
        self._provider_configs = provider_configs

    def http_client(self) -> httpx.AsyncClient:
        """A client to share between many http steps, so they reuse connections."""
        return http.egress_client(self._egress)

    def runs(self, step: Step) -> bool:
        return step.type in _RUNS_HERE

    async def run(self, step: Step, context: dict[str, Any], env: StepEnv) -> Any:
        """Runs a step of a kind this runner runs (`runs`); raises what the step raises."""
        run = _RUNS_HERE.get(step.type)
        if run is None:
            raise ApplicationError(
                f"{step.type} steps cannot run here", type="step_kind", non_retryable=True
            )
        return await run(self, step, context, env)

    async def llm(
        self,
        step: LlmStep,
        context: dict[str, Any],
        *,
        project_id: str | None = None,
        on_answer: AnswerSink | None = None,
    ) -> Any:
        """`project_id` finds the project's integration for the model; without it, the
        server's key. `on_answer` hears of the answer before its JSON is checked: a call
        made is paid for, whatever its answer."""
        messages = [Message(role=MessageRole.user, content=render_string(step.prompt, context))]
        if step.system_prompt:
            messages.insert(
                0,
                Message(
                    role=MessageRole.system, content=render_string(step.system_prompt, context)
                ),
            )
        config = await self._provider_configs(
            llm_provider.provider_of(step.model),
            project_id=project_id,
            integration=step.integration,
        )
        try:
            response = await llm_provider.complete(
                LlmRequest(
                    model=step.model,
                    messages=messages,
                    temperature=step.temperature,
                    json_schema=step.json_schema,
                ),
                config=config,
            )
        except llm_provider.ProviderError as exc:
            raise provider_failure(exc) from None
        if on_answer is not None:
            await on_answer(response.usage, config is not None and config.trusted)
        if step.json_schema is None:
            return response.content
        return _validated_json(response.content, step.json_schema)

    async def http(
        self,
        step: HttpStep,
        context: dict[str, Any],
        *,
        idempotency_key: str,
        scrubber: SecretScrubber,
        client: httpx.AsyncClient | None = None,
    ) -> Any:
        """`idempotency_key` must be the same on every retry of the same request;
        `scrubber` scrubs the excerpt of an error response before it is cut short (a cut
        secret would not be recognised afterwards)."""
        headers = {k: render_string(v, context) for k, v in step.headers.items()}
        headers.setdefault("Idempotency-Key", idempotency_key)
        if step.auth_secret is not None:
            secret = context["secrets"].get(step.auth_secret)
            if secret is None:
                raise ApplicationError(
                    f"no project secret named {step.auth_secret!r}", non_retryable=True
                )
            headers["Authorization"] = f"Bearer {secret}"
        body = render_value(step.body, context) if step.body is not None else None
        result = await http.fetch(
            step.method,
            render_string(step.url, context),
            policy=self._egress,
            headers=headers,
            params={k: render_string(v, context) for k, v in step.query.items()},
            json=body if not isinstance(body, str | bytes) and body is not None else None,
            content=body if isinstance(body, str) else None,
            timeout=step.timeout_seconds,
            max_response_bytes=step.max_response_bytes,
            client=client,
        )
        if step.fail_on_error_status and result.status >= 400:
            retryable = result.status in (408, 409, 429) or result.status >= 500
            excerpt = scrubber.text(result.text())[:300]
            raise ApplicationError(
                f"HTTP {result.status} from {result.url}: {excerpt}",
                type="http_status",
                non_retryable=not retryable,
            )
        return {
            "status": result.status,
            "headers": result.headers,
            "body": _decoded_body(result, step.response),
            "url": result.url,
        }

    async def code(self, step: CodeStep, context: dict[str, Any]) -> Any:
        settings = self._settings
        if not settings.code_steps_enabled:
            raise ApplicationError(
                "code steps are turned off on this server (BATON_CODE_STEPS_ENABLED=false)",
                type="disabled",
                non_retryable=True,
            )
        limits = code_runner.CodeLimits(
            cpu_seconds=settings.code_cpu_seconds,
            memory_mb=settings.code_memory_mb,
            wall_seconds=min(settings.code_wall_seconds, step.timeout_seconds),
        )
        unsandboxed = settings.code_sandbox is CodeSandbox.none
        try:
            # The code sees params, steps and foreach; never secrets.
            inputs = {k: v for k, v in context.items() if k != "secrets"}
            result = await code_runner.run_python(
                step.code,
                inputs,
                limits=limits,
                bwrap=None if unsandboxed else settings.code_bwrap_path,
            )
        except SandboxUnavailable as exc:
            # A worker without a sandbox refuses every code step until its operator acts.
            raise ApplicationError(exc.message, type=exc.code, non_retryable=True) from exc
        except code_runner.CodeStepError as exc:
            # The same code with the same inputs fails the same way: no retry.
            raise ApplicationError(
                exc.message, type=f"code_{exc.kind}", non_retryable=True
            ) from exc
        return result.result


async def _llm(runner: StepRunner, step: LlmStep, context: dict[str, Any], env: StepEnv) -> Any:
    return await runner.llm(step, context, project_id=env.project_id, on_answer=env.on_answer)


async def _http(runner: StepRunner, step: HttpStep, context: dict[str, Any], env: StepEnv) -> Any:
    return await runner.http(
        step,
        context,
        idempotency_key=env.idempotency_key,
        scrubber=env.scrubber,
        client=env.client,
    )


async def _code(runner: StepRunner, step: CodeStep, context: dict[str, Any], env: StepEnv) -> Any:
    return await runner.code(step, context)


# The executor of each kind StepRunner runs (its activity calls it, and an enrichment batch).
_RUNS_HERE: dict[str, Callable[[StepRunner, Any, dict[str, Any], StepEnv], Awaitable[Any]]] = {
    "llm": _llm,
    "http": _http,
    "code": _code,
}


class InProcessExecutor:
    """The step interpreter's executor for steps run in this process (an enrichment row): a
    step runs here as its activity would run it, with the retries, backoff and timeout
    Temporal would give that activity. Outputs and errors are scrubbed of `secrets`, which
    only a kind that reads secrets is given."""

    def __init__(
        self,
        runner: StepRunner,
        *,
        key_prefix: str,
        secrets: dict[str, str],
        scrubber: SecretScrubber,
        project_id: str | None = None,
        client: httpx.AsyncClient | None = None,
        charger_for: ChargerFor | None = None,
    ) -> None:
        """`key_prefix`: the idempotency key of a request is `<key_prefix>:<step>` (`:<item>`
        in a foreach), the same on every attempt; `scrubber` knows `secrets`; `charger_for`
        gives who charges an `llm` step's answer (None: not metered)."""
        self._charger_for = charger_for
        self._runner = runner
        self._key_prefix = key_prefix
        self._secrets = secrets
        self._scrubber = scrubber
        self._project_id = project_id
        self._client = client

    async def execute(
        self,
        step: Step,
        kind: StepKind[Any],
        context: dict[str, Any],
        *,
        position: int,
        item: int,
    ) -> Any:
        if not self._runner.runs(step):
            raise StepError(f"{step.type} steps cannot run here")
        if kind.reads_secrets:
            context = {**context, "secrets": self._secrets}
        key = f"{self._key_prefix}:{step.name}" + (f":{item}" if item >= 0 else "")
        env = StepEnv(
            idempotency_key=key,
            scrubber=self._scrubber,
            project_id=self._project_id,
            client=self._client,
            on_answer=None
            if self._charger_for is None
            else self._charger_for(step, position, item),
        )
        delay = 0.5
        for attempt in range(step.retries + 1):
            try:
                async with asyncio.timeout(step.timeout_seconds):
                    output = await self._runner.run(step, context, env)
                return self._scrubber.value(output)
            except TimeoutError:
                error = ApplicationError(f"no result within {step.timeout_seconds:g}s")
            except BatonError as exc:
                error = as_application_error(exc)
            except ApplicationError as exc:
                error = exc
            except Exception as exc:  # its message may quote what was sent: scrubbed below
                error = ApplicationError(str(exc), type=type(exc).__name__)
            if error.non_retryable or attempt == step.retries:
                raise StepError(self._scrubber.text(error.message))
            await asyncio.sleep(_retry_delay(error, delay))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


def _retry_delay(error: ApplicationError, default: float) -> float:
    if error.next_retry_delay is not None:
        return error.next_retry_delay.total_seconds()
    return default


class ToolRunActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], plans: PlanBook | None = None
    ) -> None:
        """`plans`: what the run's `llm` steps charge (None: not metered)."""
        self._sessions = session_factory
        self._plans = plans

    # Run as a local activity: one short write at the end, no extra round trip to the server.
    @activity.defn(name="baton.tool_run.finish")
    async def finish(self, finish: ToolRunFinish) -> None:
        async with self._sessions.begin() as session:
            payer = None
            if finish.charges and self._plans is not None and finish.project_id is not None:
                # Read before the first write: SQLite's writers take turns from there on.
                org = await credit_repo.organization_of(
                    session=session, project_id=finish.project_id
                )
                payer = (self._plans, finish.project_id, org)
            await run_repo.put_step_records(
                session=session, run_id=finish.run_id, records=finish.records
            )
            await run_repo.finish_run(
                session=session,
                run_id=finish.run_id,
                status=finish.status,
                output=finish.output,
                error=finish.error,
            )
            if payer is not None:
                plans, project_id, org = payer
                await credit_repo.charge_llm_calls(
                    session=session,
                    plans=plans,
                    project_id=project_id,
                    calls=finish.charges,
                    org=org,
                )


def render_value(value: Any, context: dict[str, Any]) -> Any:
    try:
        return templating.render_tree(value, context)
    except templating.TemplateError as exc:
        raise ApplicationError(f"template: {exc}", type="template", non_retryable=True) from exc


def render_string(template: str, context: dict[str, Any]) -> str:
    value = render_value(template, context)
    return value if isinstance(value, str) else json.dumps(value)


def _decoded_body(result: http.HttpResult, mode: str) -> Any:
    if mode == "text":
        return result.text()
    if mode == "json":
        try:
            return result.json()
        except ValueError as exc:
            raise ApplicationError(
                f"the response is not JSON: {exc}", type="http_body", non_retryable=True
            ) from exc
    content_type = result.headers.get("content-type", "")
    if "json" in content_type:
        try:
            return result.json()
        except ValueError:
            return result.text()
    return result.text()


def _validated_json(content: str, schema: dict[str, Any]) -> Any:
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # Retryable: the model may well answer properly next time.
        raise ApplicationError(f"the model's answer is not JSON: {exc}", type="llm_json") from exc
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=str)
    if errors:
        raise ApplicationError(
            f"the model's JSON does not match the schema: {errors[0].message}", type="llm_json"
        )
    return value
