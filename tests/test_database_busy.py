"""A busy SQLite (another process holding the write lock past the busy timeout) is a 503 with
`Retry-After` that changed nothing, never a 500 `database is locked`; the retry then works."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.testing import WorkflowEnvironment

from baton.db.engine import is_sqlite
from baton.settings import Settings
from tests.support import Tenant, api_client


async def test_a_busy_sqlite_answers_503_with_retry_after_and_loses_nothing(
    settings: Settings, temporal_env: WorkflowEnvironment, tenant: Tenant
):
    url = settings.resolved_database_url
    if not is_sqlite(url):
        pytest.skip("SQLite's database-wide write lock; PostgreSQL locks rows")
    busy = settings.model_copy(update={"sqlite_busy_timeout_seconds": 0.3})
    body = {"name": "Patient", "model": "scripted:echo"}
    async with api_client(busy, temporal_env.client) as api:
        # The token's use is recorded (a write, once a minute), before the lock is taken.
        assert (await api.get(tenant.url("/agents"), headers=tenant.headers)).status_code == 200
        holder = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process's write in progress
            refused = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "database_busy"
            # Reads go on meanwhile: they write nothing.
            listed = await api.get(tenant.url("/agents"), headers=tenant.headers)
            assert listed.status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        retried = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
        assert retried.status_code == 201, retried.text
        names = await agent_names(api, tenant)
        assert names.count("Patient") == 1


async def agent_names(api: httpx.AsyncClient, tenant: Tenant) -> list[str]:
    listed = (await api.get(tenant.url("/agents"), headers=tenant.headers)).json()
    items = listed["items"] if isinstance(listed, dict) else listed
    return [agent["name"] for agent in items]
