"""LLM calls. A provider's key is looked up here, at call time, so it never travels in a
workflow's history; whether a failure is worth retrying, and when, is the provider's answer."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.events import EventWriter
from activities.heartbeats import with_heartbeats
from baton.db.repositories import integrations as integration_repo
from baton.domain.egress import EgressPolicy
from baton.domain.events import EventType
from baton.domain.llm import LlmRequest, LlmResponse, ProviderConfig
from baton.domain.models import ANTHROPIC_PROVIDER, OPENAI_PROVIDER, SCRIPTED_PROVIDER
from baton.domain.tasks import LlmCall
from baton.errors import BatonError
from baton.integrations import llm
from baton.integrations.llm import ProviderError
from baton.security import SecretBox
from baton.settings import Settings


class ProviderConfigResolver(Protocol):
    """How to reach `provider` for a project (through the integration named, if any), or
    None when nothing is configured for it."""

    async def __call__(
        self, provider: str, *, project_id: str | None = None, integration: str | None = None
    ) -> ProviderConfig | None: ...


def settings_provider_configs(settings: Settings) -> ProviderConfigResolver:
    """The server's own keys, the same for every project. Their base URLs are the operator's
    own, set where the database URL is, so they are trusted (not passed through the egress
    guard): a local model server on 127.0.0.1:11434 stays closed to tenants' http steps."""
    configs = {
        OPENAI_PROVIDER: ProviderConfig(
            api_key=settings.openai_api_key, base_url=settings.openai_base_url, trusted=True
        ),
        ANTHROPIC_PROVIDER: ProviderConfig(
            api_key=settings.anthropic_api_key, base_url=settings.anthropic_base_url, trusted=True
        ),
    }

    async def resolve(
        provider: str, *, project_id: str | None = None, integration: str | None = None
    ) -> ProviderConfig | None:
        return configs.get(provider)

    return resolve


def project_provider_configs(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings
) -> ProviderConfigResolver:
    """A project's integrations first, then the server's keys. The key is decrypted here,
    at call time, from a reference (project, integration name) that is all history holds.
    A project's base URL is a tenant's choice: its every connection passes the egress guard
    that http steps pass, whatever was stored before that rule."""
    box = SecretBox.from_settings(settings)
    egress = EgressPolicy.from_settings(settings)
    fallback = settings_provider_configs(settings)

    async def resolve(
        provider: str, *, project_id: str | None = None, integration: str | None = None
    ) -> ProviderConfig | None:
        if provider == SCRIPTED_PROVIDER:
            return None  # offline: no key, no endpoint, no database read
        if project_id is not None:
            async with session_factory() as session:
                config = await integration_repo.resolve_provider_config(
                    session=session,
                    box=box,
                    project_id=project_id,
                    provider=provider,
                    integration=integration,
                )
            if config is not None:
                return config.model_copy(update={"egress": egress})
        return await fallback(provider)

    return resolve


async def no_provider_configs(
    provider: str, *, project_id: str | None = None, integration: str | None = None
) -> ProviderConfig | None:
    return None


class LlmActivities:
    def __init__(
        self,
        provider_configs: ProviderConfigResolver = no_provider_configs,
        session_factory: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._provider_configs = provider_configs
        self._sessions = session_factory

    @activity.defn(name="baton.llm.complete")
    async def complete(self, request: LlmRequest) -> LlmResponse:
        return await self._complete(request, _heartbeat)

    @activity.defn(name="baton.llm.chat")
    async def chat(self, call: LlmCall) -> LlmResponse:
        """A task's LLM call: each piece of text becomes a `message.delta` event as it
        streams in (keys derived from `stream_key`, so a retry's pieces are not doubled)."""
        if self._sessions is None:
            return await self._complete(call.request, _heartbeat, call)
        # Each attempt streams under its own keys: a retry's text arrives whole, and the
        # `message.completed` event that follows is the text that counts.
        prefix = f"{call.stream_key}:attempt-{activity.info().attempt}"
        writer = EventWriter(self._sessions, call.task_id, key_prefix=prefix)

        async def on_delta(delta: str) -> None:
            activity.heartbeat()
            # `at`: when the piece was produced, so a client can see how fresh its stream is.
            await writer.emit(EventType.message_delta, {"text": delta, "at": time.time()})

        try:
            return await self._complete(call.request, on_delta, call)
        finally:
            await writer.flush()

    async def _complete(
        self,
        request: LlmRequest,
        on_delta: Callable[[str], Awaitable[None]],
        call: LlmCall | None = None,
    ) -> LlmResponse:
        try:
            config = await self._provider_configs(
                llm.provider_of(request.model),
                project_id=call.project_id if call else None,
                integration=call.integration if call else None,
            )
            # Heartbeats go on while the model thinks: a dead worker's call is retried
            # within the heartbeat timeout, not after the whole call timeout.
            return await with_heartbeats(llm.complete(request, config=config, on_delta=on_delta))
        except ProviderError as exc:
            # `from None`: the client library's own exception is not redacted, and a failure's
            # causes are recorded in history.
            raise provider_failure(exc) from None
        except BatonError as exc:
            raise as_application_error(exc) from exc


async def _heartbeat(delta: str) -> None:
    # Each piece of a streamed answer is a sign of life, so a cancelled task stops its stream.
    activity.heartbeat()


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
