"""How to reach an LLM provider for a project: its integrations first, then the server's own
keys. The worker's LLM activities and the API's query embedders resolve through the same
function, so a key is decrypted only at call time, from a reference history may hold."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import integrations as integration_repo
from baton.domain.egress import EgressPolicy
from baton.domain.llm import ProviderConfig
from baton.domain.models import ANTHROPIC_PROVIDER, OPENAI_PROVIDER, PROVIDERS
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
        known = PROVIDERS.get(provider)
        if known is not None and known.offline:
            return None  # no key, no endpoint, no database read
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
