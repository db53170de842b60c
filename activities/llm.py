"""LLM calls. A provider's key is looked up here, at call time, so it never travels in a
workflow's history; whether a failure is worth retrying, and when, is the provider's answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.errors import as_application_error
from activities.events import EventWriter
from activities.heartbeats import with_heartbeats
from activities.tasks import write_message, write_status
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import tasks as task_repo
from baton.domain.credits import OUT_OF_CREDITS, Currency, PlanBook, llm_call_key
from baton.domain.events import EventType
from baton.domain.llm import (
    LLM_RETRYING_SIGNAL,
    LlmRequest,
    LlmResponse,
    LlmRetrying,
    Message,
    MessageRole,
)
from baton.domain.tasks import LlmCall, TaskMessageAppend, TaskStatus, TaskStatusUpdate
from baton.errors import BatonError, OutOfCredits
from baton.integrations import llm
from baton.integrations.llm import ProviderError
from baton.services.provider_configs import ProviderConfigResolver, no_provider_configs

logger = logging.getLogger("baton.llm")
# Telling the workflow of a retry must not hold up the attempt's failure for long.
SIGNAL_TIMEOUT = timedelta(seconds=5)


class LlmActivities:
    def __init__(
        self,
        provider_configs: ProviderConfigResolver = no_provider_configs,
        session_factory: async_sessionmaker[AsyncSession] | None = None,
        plans: PlanBook | None = None,
    ) -> None:
        """`plans`: what a task's model calls on the installation's keys cost its
        organisation (None: not metered, for tests of the adapters alone)."""
        self._provider_configs = provider_configs
        self._sessions = session_factory
        self._plans = plans

    @activity.defn(name="baton.llm.complete")
    async def complete(self, request: LlmRequest) -> LlmResponse:
        response, _ = await self._complete(request, _heartbeat)
        return response

    @activity.defn(name="baton.llm.chat")
    async def chat(self, call: LlmCall) -> LlmResponse:
        """A task's LLM call: each piece of text becomes a `message.delta` event as it
        streams in (keys derived from `stream_key`, so a retry's pieces are not doubled).
        With `call.seq`, the conversation is read from the database and the answer written
        there (see `LlmCall`)."""
        if self._sessions is None:
            response, _ = await self._complete(call.request, _heartbeat, call)
            return response
        request = call.request
        if call.seq is not None:
            prepared = await self._prepare(self._sessions, call, call.seq)
            if isinstance(prepared, LlmResponse):
                return prepared
            request = prepared
        # Each attempt streams under its own keys: a retry's text arrives whole, and the
        # `message.completed` event that follows is the text that counts.
        prefix = f"{call.stream_key}:attempt-{activity.info().attempt}"
        writer = EventWriter(self._sessions, call.task_id, key_prefix=prefix)

        async def on_delta(delta: str) -> None:
            activity.heartbeat()
            # `at`: when the piece was produced, so a client can see how fresh its stream is.
            await writer.emit(EventType.message_delta, {"text": delta, "at": time.time()})

        try:
            response, billed = await self._complete(request, on_delta, call)
        except ApplicationError as failure:
            retry_in = next_retry_in(failure)
            if retry_in is not None:
                retrying = LlmRetrying(
                    attempt=activity.info().attempt,
                    error=failure.message,
                    next_attempt_at=datetime.now(UTC) + timedelta(seconds=retry_in),
                )
                # Said in the task's events, so a client does not watch a silent `running`,
                # and to the workflow, whose details in the Temporal UI say it too.
                await writer.emit(
                    EventType.llm_retrying,
                    {**retrying.model_dump(mode="json"), "retry_in_seconds": round(retry_in, 3)},
                )
                await _tell_workflow(retrying)
            raise
        finally:
            await writer.flush()
        if call.seq is not None:
            await self._answer(self._sessions, call, call.seq, response, billed=billed)
            if billed and self._plans is not None:
                price = self._plans.prices.get(call.request.model)
                if price is not None:  # what the call costs, which its task counts
                    usage = response.usage
                    micros = price.cost_micros(
                        usage.input_tokens, usage.output_tokens, usage.cached_input_tokens
                    )
                    response = response.model_copy(update={"vendor_micros": micros})
        return response

    async def _prepare(
        self, sessions: async_sessionmaker[AsyncSession], call: LlmCall, seq: int
    ) -> LlmRequest | LlmResponse:
        """Writes what the workflow gave (messages, status) and reads the conversation: the
        request to send, or the answer an earlier attempt already wrote at `seq`."""
        async with sessions.begin() as session:
            written = await task_repo.get_message(session=session, task_id=call.task_id, seq=seq)
            if written is not None:
                # Its vendor credits were charged with it, in the same transaction: the task
                # counts them against its budget as if this attempt had made the call.
                charged = await credit_repo.charged(
                    session=session, key=llm_call_key(call.task_id, seq)
                )
                return LlmResponse(
                    content=written.content,
                    tool_calls=written.tool_calls,
                    model=call.request.model,
                    vendor_micros=charged,
                )
            # Before any write: a call that cannot be paid for leaves the task as it was.
            await self._require_credits(session, call)
            for append in call.writes:
                await write_message(session, append)
            if call.status is not None:
                update = TaskStatusUpdate(task_id=call.task_id, status=call.status)
                await write_status(session, update, key=f"status:{call.stream_key}")
            messages = await task_repo.list_messages(
                session=session, task_id=call.task_id, before=seq
            )
        if len(messages) != seq:
            raise ApplicationError(
                f"the task has {len(messages)} messages before message {seq}",
                type="transcript_gap",
                non_retryable=True,
            )
        if call.system_prompt:
            messages.insert(0, Message(role=MessageRole.system, content=call.system_prompt))
        return call.request.model_copy(update={"messages": messages})

    async def _require_credits(self, session: AsyncSession, call: LlmCall) -> None:
        """A task's model call its organisation cannot pay for is not made: with tools to
        call (each call a tool run, an action) it needs an action left, and on the
        installation's key a priced model needs vendor credits left. Raised as the
        non-retryable `OutOfCredits`, on which the task pauses until credits arrive."""
        request = call.request
        if self._plans is None or call.project_id is None:
            return
        needed = [Currency.actions] if request.tools else []
        if request.model in self._plans.prices:
            config = await self._provider_configs(
                llm.provider_of(request.model),
                project_id=call.project_id,
                integration=call.integration,
            )
            if config is not None and config.trusted:
                needed.append(Currency.vendor_credits)
        if not needed:
            return
        try:
            for currency in needed:
                await credit_repo.require(
                    session=session,
                    plans=self._plans,
                    project_id=call.project_id,
                    currency=currency,
                )
        except OutOfCredits as exc:
            raise ApplicationError(
                exc.message, exc.details, type=OUT_OF_CREDITS, non_retryable=True
            ) from None

    async def _answer(
        self,
        sessions: async_sessionmaker[AsyncSession],
        call: LlmCall,
        seq: int,
        response: LlmResponse,
        *,
        billed: bool,
    ) -> None:
        """Writes the answer once; a call on the installation's key (`billed`) is charged
        its vendor credits with it, so once too."""
        answer = Message(
            role=MessageRole.assistant, content=response.content, tool_calls=response.tool_calls
        )
        async with sessions.begin() as session:
            new = await write_message(
                session,
                TaskMessageAppend(
                    task_id=call.task_id,
                    seq=seq,
                    message=answer,
                    usage=response.usage,
                    model=call.request.model,
                ),
            )
            if new and billed and self._plans is not None and call.project_id is not None:
                await credit_repo.charge_llm_call(
                    session=session,
                    plans=self._plans,
                    project_id=call.project_id,
                    key=llm_call_key(call.task_id, seq),
                    model=call.request.model,
                    input_tokens=response.usage.input_tokens,
                    output_tokens=response.usage.output_tokens,
                    cached_input_tokens=response.usage.cached_input_tokens,
                )
            if call.idle_after_answer and not response.tool_calls:
                update = TaskStatusUpdate(task_id=call.task_id, status=TaskStatus.idle)
                await write_status(session, update, key=f"status:{call.stream_key}:answered")

    async def _complete(
        self,
        request: LlmRequest,
        on_delta: Callable[[str], Awaitable[None]],
        call: LlmCall | None = None,
    ) -> tuple[LlmResponse, bool]:
        """The answer, and whether the call ran on the installation's own key (what vendor
        credits pay for) rather than a project's integration or an offline model."""
        try:
            config = await self._provider_configs(
                llm.provider_of(request.model),
                project_id=call.project_id if call else None,
                integration=call.integration if call else None,
            )
            # Heartbeats go on while the model thinks: a dead worker's call is retried
            # within the heartbeat timeout, not after the whole call timeout.
            response = await with_heartbeats(
                llm.complete(request, config=config, on_delta=on_delta)
            )
            return response, config is not None and config.trusted
        except ProviderError as exc:
            # `from None`: the client library's own exception is not redacted, and a failure's
            # causes are recorded in history.
            raise provider_failure(exc) from None
        except BatonError as exc:
            raise as_application_error(exc) from exc


async def _tell_workflow(retrying: LlmRetrying) -> None:
    """Signals the calling workflow: a signal and a workflow task in its history per retry.
    Best effort: the attempt's own failure is what matters, and it is raised whether or not
    this reaches Temporal."""
    info = activity.info()
    if info.workflow_id is None:
        return
    try:
        handle = activity.client().get_workflow_handle(
            info.workflow_id, run_id=info.workflow_run_id
        )
        await handle.signal(LLM_RETRYING_SIGNAL, retrying, rpc_timeout=SIGNAL_TIMEOUT)
    except (RPCError, RuntimeError) as exc:  # RuntimeError: no client (ActivityEnvironment)
        logger.warning("could not tell workflow %s of the retry: %s", info.workflow_id, exc)


async def _heartbeat(delta: str) -> None:
    # Each piece of a streamed answer is a sign of life, so a cancelled task stops its stream.
    activity.heartbeat()


def next_retry_in(failure: ApplicationError) -> float | None:
    """Seconds until Temporal tries this activity again after `failure`, or None when it
    will not (a failure that is not retried, or the last attempt): the activity's retry
    policy, or the delay the provider asked for."""
    info = activity.info()
    policy = info.retry_policy
    if failure.non_retryable or policy is None:
        return None
    if policy.maximum_attempts and info.attempt >= policy.maximum_attempts:
        return None
    if failure.type in (policy.non_retryable_error_types or ()):
        return None
    if failure.next_retry_delay is not None:
        return failure.next_retry_delay.total_seconds()
    delay = policy.initial_interval.total_seconds() * policy.backoff_coefficient ** (
        info.attempt - 1
    )
    if policy.maximum_interval is not None:
        delay = min(delay, policy.maximum_interval.total_seconds())
    return delay


def provider_failure(exc: ProviderError) -> ApplicationError:
    """The Temporal failure for a provider's error: retried or not as the provider's answer
    allows, after the delay it asked for."""
    return ApplicationError(
        exc.message,
        exc.details,
        type=exc.code,
        non_retryable=not exc.retryable,
        next_retry_delay=timedelta(seconds=exc.retry_after) if exc.retry_after else None,
    )
