"""Large values stay out of Temporal's history: a client and worker built as `baton worker`
and the API build them store payloads over 64 KB in the database (a claim check)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from baton import temporal
from baton.db.tables import PayloadBlob
from baton.settings import Settings
from tests.support import Tenant, api_client, worker_on

BIG = 300_000


async def test_a_big_step_output_is_kept_out_of_history_and_still_flows_on(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=temporal.data_converter(settings, session_factory),
    )
    async with worker_on(client, settings, session_factory), api_client(settings, client) as api:
        tool = await api.post(
            tenant.url("/tools"),
            json={
                "name": "Big",
                "steps": [
                    {"name": "make", "type": "code", "code": f"result = 'x' * {BIG}"},
                    {
                        "name": "measure",
                        "type": "template",
                        "template": "{{ steps.make.output | length }}",
                    },
                ],
            },
            headers=tenant.headers,
        )
        run = await api.post(
            tenant.url(f"/tools/{tool.json()['id']}/runs"),
            json={"wait": True},
            headers=tenant.headers,
        )
        body: dict[str, Any] = run.json()

    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == BIG
    history = await client.get_workflow_handle(body["workflow_id"]).fetch_history()
    largest = max(len(e.SerializeToString()) for e in history.events)
    assert largest < 64 * 1024, f"an event of {largest} bytes reached history"
    async with session_factory() as session:
        stored = await session.scalar(select(func.count()).select_from(PayloadBlob))
    assert stored is not None and stored >= 1
