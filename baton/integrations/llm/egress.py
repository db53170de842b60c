"""Provider base URLs through the egress guard: the HTTP client the SDKs get, so a project's
base URL reaches only what an http step could reach (checked as each connection opens,
whatever was stored), and no redirect carries its key anywhere else."""

from __future__ import annotations

import httpx2

from baton.domain.llm import ProviderConfig
from baton.integrations import http


def http_client(config: ProviderConfig) -> httpx2.AsyncClient | None:
    """None (the SDK's own client) only for the operator's trusted endpoints."""
    return None if config.trusted else http.provider_client(config.egress)


def refusal_in(exc: BaseException) -> http.BlockedDestination | None:
    """The guard's refusal behind an SDK's connection error, if that is what it was."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        if isinstance(link, http.BlockedDestination):
            return link
        chain.append(link)
        link = link.__cause__ or link.__context__
    return None
