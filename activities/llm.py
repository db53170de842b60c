"""LLM calls. A provider's key is looked up here, at call time, so it never travels in a
workflow's history; whether a failure is worth retrying, and when, is the provider's answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from baton.domain.llm import LlmRequest, LlmResponse, ProviderConfig
from baton.domain.models import ANTHROPIC_PROVIDER, OPENAI_PROVIDER
from baton.errors import BatonError
from baton.integrations import llm
from baton.integrations.llm import ProviderError
from baton.settings import Settings

ProviderConfigResolver = Callable[[str], Awaitable[ProviderConfig | None]]
"""Provider name -> how to reach it, or None when nothing is configured for it."""


def settings_provider_configs(settings: Settings) -> ProviderConfigResolver:
    configs = {
        OPENAI_PROVIDER: ProviderConfig(
            api_key=settings.openai_api_key, base_url=settings.openai_base_url
        ),
        ANTHROPIC_PROVIDER: ProviderConfig(
            api_key=settings.anthropic_api_key, base_url=settings.anthropic_base_url
        ),
    }

    async def resolve(provider: str) -> ProviderConfig | None:
        return configs.get(provider)

    return resolve


async def no_provider_configs(provider: str) -> ProviderConfig | None:
    return None


class LlmActivities:
    def __init__(self, provider_configs: ProviderConfigResolver = no_provider_configs) -> None:
        self._provider_configs = provider_configs

    @activity.defn(name="baton.llm.complete")
    async def complete(self, request: LlmRequest) -> LlmResponse:
        try:
            config = await self._provider_configs(llm.provider_of(request.model))
            return await llm.complete(request, config=config, on_delta=_heartbeat)
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
