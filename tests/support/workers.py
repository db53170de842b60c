"""Real workers on a test's own task queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from baton.settings import Settings
from tests.support.client import api_client
from worker import create_worker


def worker_on(
    client: Client, settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> Worker:
    """A real worker on the settings' task queue (enter it with `async with`), for tests
    whose settings or client differ from the `worker` fixture's."""
    return create_worker(
        client,
        task_queue=settings.temporal_task_queue,
        session_factory=session_factory,
        settings=settings,
    )


@asynccontextmanager
async def app_with_worker(
    settings: Settings, client: Client, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """The app and a real worker, both built from `settings` and on `client`, for tests
    whose settings differ from the `api` and `worker` fixtures': yields the API client."""
    async with worker_on(client, settings, session_factory), api_client(settings, client) as api:
        yield api
