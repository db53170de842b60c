"""Enriching a knowledge set with a tool: every row once, through crashes, cancels and
continue-as-new; errors recorded per row; mappings checked before anything runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.tables import KnowledgeRow
from baton.domain.enrichment import BATCHES_PER_RUN
from baton.search_attributes import BATON_STATUS
from baton.settings import Settings
from tests.local_http import LocalHttp
from tests.processes import Parts, kill, start_worker, wait_until
from tests.support import Tenant, api_client, assert_error, body_of, histories_of, worker_on
from tests.support.factories import read_until

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


@pytest.fixture
def enrich_settings(settings: Settings) -> Settings:
    """The local HTTP server is allowed, as a self-hosted internal API would be."""
    return settings.model_copy(update={"http_allow_networks": ["127.0.0.0/8"]})


@pytest.fixture
async def api(
    enrich_settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(enrich_settings, temporal_env.client) as client:
        yield client


@pytest.fixture
async def enrich_worker(
    temporal_env: WorkflowEnvironment,
    enrich_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Worker]:
    running = worker_on(temporal_env.client, enrich_settings, session_factory)
    async with running:
        yield running


def effect_tool(local_http: LocalHttp, seconds: float) -> dict[str, Any]:
    """Posts the row's name to /effect; its answer echoes the request's Idempotency-Key."""
    return {
        "name": "effect",
        "params": [{"name": "name"}],
        "steps": [
            {
                "name": "post",
                "type": "http",
                "method": "POST",
                "url": f"{local_http.base}/effect?seconds={seconds}",
                "body": {"name": "{{ params.name }}"},
            }
        ],
    }


async def new_tool(api: httpx.AsyncClient, tenant: Tenant, spec: dict[str, Any]) -> str:
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    assert response.status_code == 201, response.text
    tool_id: str = response.json()["id"]
    return tool_id


async def new_set(
    api: httpx.AsyncClient, tenant: Tenant, columns: list[dict[str, Any]], rows: list[Any]
) -> tuple[str, list[int]]:
    created = await api.post(
        tenant.url("/knowledge/sets"),
        json={"name": "people", "columns": columns},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    set_id: str = created.json()["id"]
    ids: list[int] = []
    for start in range(0, len(rows), 500):
        added = await api.post(
            tenant.url(f"/knowledge/sets/{set_id}/rows"),
            json=rows[start : start + 500],
            headers=tenant.headers,
        )
        assert added.status_code == 201, added.text
        ids += added.json()["row_ids"]
    return set_id, ids


def text_columns(*names: str) -> list[dict[str, Any]]:
    return [{"name": name} for name in names]


def enrichments_url(tenant: Tenant, set_id: str, path: str = "") -> str:
    return tenant.url(f"/knowledge/sets/{set_id}/enrichments{path}")


async def start(api: httpx.AsyncClient, tenant: Tenant, set_id: str, **body: Any) -> dict[str, Any]:
    response = await api.post(enrichments_url(tenant, set_id), json=body, headers=tenant.headers)
    return body_of(response, 201)


async def wait_for_job(
    api: httpx.AsyncClient,
    tenant: Tenant,
    set_id: str,
    job_id: str,
    until: Any = lambda job: job["status"] in FINAL,
    timeout: float = 120,
) -> dict[str, Any]:
    url = enrichments_url(tenant, set_id, f"/{job_id}")
    return await read_until(
        api, tenant, url, until, timeout=timeout, what=f"enrichment job {job_id}"
    )


async def rows_of(
    session_factory: async_sessionmaker[AsyncSession], set_id: str
) -> dict[int, dict[str, Any]]:
    async with session_factory() as session:
        found = await session.execute(
            select(KnowledgeRow.id, KnowledgeRow.data).where(KnowledgeRow.set_id == set_id)
        )
        return {row_id: data for row_id, data in found.all()}


def key_of(job_id: str, row_id: int) -> str:
    return f"enrich:{job_id}:{row_id}:post"


async def test_every_row_is_enriched_once_though_the_worker_is_killed_mid_way(
    api: httpx.AsyncClient,
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    local_http: LocalHttp,
    session_factory: async_sessionmaker[AsyncSession],
):
    local_http.reset()
    local_http.effects.clear()
    tool_id = await new_tool(api, tenant, effect_tool(local_http, seconds=0.01))
    set_id, row_ids = await new_set(
        api,
        tenant,
        text_columns("name", "receipt", "receipt_error"),
        [{"name": f"person {i}"} for i in range(1000)],
    )
    parts = Parts(
        database_url=settings.resolved_database_url,
        temporal_address=temporal_env.client.service_client.config.target_host,
        task_queue=settings.temporal_task_queue,
        data_dir=settings.data_dir,
    )
    first = start_worker(parts)
    second = None
    try:
        job = await start(
            api,
            tenant,
            set_id,
            tool_id=tool_id,
            input_mapping={"name": {"column": "name"}},
            output_mapping={"receipt": "body.key"},
            concurrency=8,
            batch_size=100,
        )
        await wait_until(lambda: len(local_http.effects) >= 300, 90, "a third of the rows")
        kill(first)
        written_before = {
            row_id
            for row_id, data in (await rows_of(session_factory, set_id)).items()
            if "receipt" in data
        }
        second = start_worker(parts)
        finished = await wait_for_job(api, tenant, set_id, job["id"])
    finally:
        kill(first)
        kill(second)

    assert finished["status"] == "succeeded", finished["error"]
    assert (finished["done"], finished["failed"], finished["total"]) == (1000, 0, 1000)
    rows = await rows_of(session_factory, set_id)
    keys = {row_id: key_of(job["id"], row_id) for row_id in row_ids}
    # Every row processed, each with its own key: a receiver honouring it acted once per row.
    assert {row_id: data.get("receipt") for row_id, data in rows.items()} == keys
    assert set(local_http.effects) == set(keys.values())
    # The crash came mid-way, and a row written before it was never sent again.
    assert 0 < len(written_before) < 1000
    assert all(local_http.effects[keys[row_id]] == 1 for row_id in written_before)


async def test_a_cancelled_job_keeps_its_rows_and_a_new_job_does_only_the_rest(
    api: httpx.AsyncClient,
    tenant: Tenant,
    enrich_worker: Worker,
    local_http: LocalHttp,
    session_factory: async_sessionmaker[AsyncSession],
):
    local_http.effects.clear()
    tool_id = await new_tool(api, tenant, effect_tool(local_http, seconds=0.05))
    set_id, row_ids = await new_set(
        api,
        tenant,
        text_columns("name", "receipt", "receipt_error"),
        [{"name": f"person {i}"} for i in range(200)],
    )
    body = {
        "tool_id": tool_id,
        "input_mapping": {"name": {"column": "name"}},
        "output_mapping": {"receipt": "body.key"},
        "concurrency": 4,
        "batch_size": 20,
    }
    # Rows after the 40th wait at the receiver, so the job is still running when cancelled.
    local_http.hold_effects_after = 40
    try:
        first = await start(api, tenant, set_id, **body)
        await wait_for_job(api, tenant, set_id, first["id"], until=lambda job: job["done"] >= 40)
        refused = await api.post(enrichments_url(tenant, set_id), json=body, headers=tenant.headers)
        assert_error(refused, 409, "conflict")
        cancel = await api.post(
            enrichments_url(tenant, set_id, f"/{first['id']}/cancel"), headers=tenant.headers
        )
        assert cancel.status_code == 202, cancel.text
        stopped = await wait_for_job(api, tenant, set_id, first["id"])
    finally:
        local_http.release_effects()
    assert stopped["status"] == "cancelled"
    kept = {
        row_id: data["receipt"]
        for row_id, data in (await rows_of(session_factory, set_id)).items()
        if "receipt" in data
    }
    assert len(kept) == 40
    assert stopped["done"] == len(kept)

    second = await start(api, tenant, set_id, **body)
    finished = await wait_for_job(api, tenant, set_id, second["id"])

    assert (finished["status"], finished["done"], finished["failed"]) == ("succeeded", 200, 0)
    rows = await rows_of(session_factory, set_id)
    # Rows the first job wrote stay as it wrote them; the second job sent only the rest.
    assert all(rows[row_id]["receipt"] == receipt for row_id, receipt in kept.items())
    second_keys = {key for key in local_http.effects if key.startswith(f"enrich:{second['id']}")}
    assert second_keys == {key_of(second["id"], r) for r in row_ids if r not in kept}
    assert all(rows[r]["receipt"] == key_of(second["id"], r) for r in row_ids if r not in kept)


async def test_a_row_that_fails_records_its_error_and_the_job_still_succeeds(
    api: httpx.AsyncClient,
    tenant: Tenant,
    enrich_worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    tool_id = await new_tool(
        api,
        tenant,
        {
            "name": "greet",
            "params": [{"name": "greeting"}, {"name": "n", "type": "integer"}],
            "steps": [
                {
                    "name": "say",
                    "type": "template",
                    "template": "{{ params.greeting }} x{{ params.n * 2 }}",
                }
            ],
        },
    )
    set_id, (ada, bob, cy) = await new_set(
        api,
        tenant,
        [*text_columns("name", "line", "problem"), {"name": "n", "type": "json"}],
        [{"name": "Ada", "n": 1}, {"name": "Bob", "n": "two"}, {"name": "Cy", "n": 3}],
    )
    job = await start(
        api,
        tenant,
        set_id,
        tool_id=tool_id,
        input_mapping={
            "greeting": {"template": "Hello {{ row.name }}!"},
            "n": {"column": "n"},
        },
        output_mapping={"line": "@"},
        error_column="problem",
    )
    finished = await wait_for_job(api, tenant, set_id, job["id"])

    assert (finished["status"], finished["done"], finished["failed"]) == ("succeeded", 2, 1)
    rows = await rows_of(session_factory, set_id)
    assert rows[ada]["line"] == "Hello Ada! x2"
    assert rows[cy]["line"] == "Hello Cy! x6"
    assert "line" not in rows[bob]
    assert "n" in rows[bob]["problem"] and "integer" in rows[bob]["problem"]
    async with session_factory() as session:
        ada_row = await session.get(KnowledgeRow, ada)
        assert ada_row is not None and "Hello Ada! x2" in ada_row.content
        assert ada_row.embedding is None


async def test_a_job_whose_set_is_deleted_under_it_ends_failed_in_temporal_with_the_reason(
    api: httpx.AsyncClient,
    tenant: Tenant,
    enrich_worker: Worker,
    temporal_env: WorkflowEnvironment,
    local_http: LocalHttp,
):
    tool_id = await new_tool(api, tenant, effect_tool(local_http, seconds=0.5))
    set_id, _ = await new_set(
        api,
        tenant,
        text_columns("name", "receipt", "receipt_error"),
        [{"name": f"row {i}"} for i in range(20)],
    )
    job = await start(
        api,
        tenant,
        set_id,
        tool_id=tool_id,
        input_mapping={"name": {"column": "name"}},
        output_mapping={"receipt": "body.key"},
        batch_size=1,
        concurrency=1,
    )
    deleted = await api.delete(tenant.url(f"/knowledge/sets/{set_id}"), headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text

    handle = temporal_env.client.get_workflow_handle(job["workflow_id"])
    # The next batch finds no set: the job is recorded failed, then its run fails with why.
    with pytest.raises(WorkflowFailureError) as raised:
        await handle.result()
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "EnrichmentFailed"
    assert cause.message == f"knowledge set {set_id} not found"
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.FAILED
    assert description.typed_search_attributes.get(BATON_STATUS) == "failed"


async def test_small_batches_continue_as_new_and_the_counts_carry_over(
    api: httpx.AsyncClient,
    tenant: Tenant,
    enrich_worker: Worker,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    rows_total = 2 * BATCHES_PER_RUN + 20
    tool_id = await new_tool(
        api,
        tenant,
        {
            "name": "shout",
            "params": [{"name": "text"}],
            "steps": [{"name": "up", "type": "template", "template": "{{ params.text | upper }}"}],
        },
    )
    set_id, row_ids = await new_set(
        api,
        tenant,
        text_columns("name", "loud", "loud_error"),
        [{"name": f"row {i}"} for i in range(rows_total)],
    )
    job = await start(
        api,
        tenant,
        set_id,
        tool_id=tool_id,
        input_mapping={"text": {"column": "name"}},
        output_mapping={"loud": "@"},
        batch_size=1,
        concurrency=1,
    )
    finished = await wait_for_job(api, tenant, set_id, job["id"])

    assert (finished["status"], finished["done"], finished["total"]) == (
        "succeeded",
        rows_total,
        rows_total,
    )
    description = await temporal_env.client.get_workflow_handle(job["workflow_id"]).describe()
    assert description.run_id != description.raw_description.workflow_execution_info.first_run_id
    # One run holds at most BATCHES_PER_RUN batches of a few events each.
    assert description.history_length < 10 * BATCHES_PER_RUN
    rows = await rows_of(session_factory, set_id)
    assert [rows[r]["loud"] for r in row_ids] == [f"ROW {i}" for i in range(rows_total)]


async def test_a_mapping_that_cannot_work_is_a_422_naming_the_field(
    api: httpx.AsyncClient, tenant: Tenant, local_http: LocalHttp
):
    tool_id = await new_tool(api, tenant, effect_tool(local_http, seconds=0))
    waits = await new_tool(
        api,
        tenant,
        {"name": "waits", "steps": [{"name": "nap", "type": "delay", "seconds": 1}]},
    )
    set_id, _ = await new_set(
        api, tenant, text_columns("name", "receipt", "problem"), [{"name": "a"}]
    )
    good = {
        "tool_id": tool_id,
        "input_mapping": {"name": {"column": "name"}},
        "output_mapping": {"receipt": "body.key"},
        "error_column": "problem",
    }

    async def field_of(**change: Any) -> str:
        response = await api.post(
            enrichments_url(tenant, set_id), json={**good, **change}, headers=tenant.headers
        )
        body = assert_error(response, 422)
        details = body["error"]["details"]
        return str(details[0].get("field") or details[0].get("loc")) if details else ""

    assert await field_of(tool_id="no-such-tool") == "tool_id"
    assert await field_of(tool_id=waits, input_mapping={}) == "tool_id"
    assert await field_of(input_mapping={}) == "input_mapping.name"
    assert await field_of(input_mapping={"nom": {"column": "name"}}) == "input_mapping.nom"
    assert await field_of(input_mapping={"name": {"column": "nmae"}}) == "input_mapping.name.column"
    assert (
        await field_of(input_mapping={"name": {"template": "{{ rows.name }}"}})
        == "input_mapping.name.template"
    )
    assert await field_of(output_mapping={"summary": "body.key"}) == "output_mapping.summary"
    assert await field_of(error_column=None) == "error_column"
    assert "output_mapping" in await field_of(output_mapping={"receipt": "body.["})
    assert "body" in await field_of(error_column="receipt")


async def test_another_tenant_cannot_see_start_or_cancel_a_sets_enrichments(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    enrich_worker: Worker,
    local_http: LocalHttp,
):
    tool_id = await new_tool(api, tenant, effect_tool(local_http, seconds=0))
    set_id, _ = await new_set(
        api, tenant, text_columns("name", "receipt", "receipt_error"), [{"name": "a"}]
    )
    job = await start(
        api,
        tenant,
        set_id,
        tool_id=tool_id,
        input_mapping={"name": {"column": "name"}},
        output_mapping={"receipt": "body.key"},
    )
    await wait_for_job(api, tenant, set_id, job["id"])
    listed = await api.get(enrichments_url(tenant, set_id), headers=tenant.headers)
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]
    # Linked to the Temporal UI under the one name every response uses.
    assert job["temporal_ui_url"].endswith(f"/workflows/{job['workflow_id']}")
    assert listed.json()["items"][0]["temporal_ui_url"] == job["temporal_ui_url"]
    assert "temporal_ui" not in job

    # The other tenant's own project, with this set's and job's ids.
    other = other_tenant.url(f"/knowledge/sets/{set_id}/enrichments")
    headers = other_tenant.headers
    assert_error(await api.get(other, headers=headers), 404)
    assert_error(await api.get(f"{other}/{job['id']}", headers=headers), 404)
    assert_error(await api.post(f"{other}/{job['id']}/cancel", headers=headers), 404)
    started = await api.post(
        other, json={"tool_id": tool_id, "output_mapping": {"receipt": "@"}}, headers=headers
    )
    assert_error(started, 404)
    # And this tenant's own project path, with the other tenant's token.
    mine = enrichments_url(tenant, set_id, f"/{job['id']}")
    assert_error(await api.get(mine, headers=headers), 404)


async def test_a_secret_reaches_the_server_but_never_a_row_or_the_history(
    api: httpx.AsyncClient,
    tenant: Tenant,
    enrich_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    secret = "sk-live-enrich-0123456789"
    put = await api.put(
        tenant.url("/secrets/api_key"), json={"value": secret}, headers=tenant.headers
    )
    assert put.status_code == 200
    local_http.reset()
    tool_id = await new_tool(
        api,
        tenant,
        {
            "name": "authed",
            "params": [{"name": "name"}],
            "steps": [
                {
                    "name": "call",
                    "type": "http",
                    "method": "POST",
                    "url": local_http.base + "/echo",
                    "auth_secret": "api_key",
                    "body": "{{ params.name }} {{ secrets.api_key }}",
                }
            ],
        },
    )
    set_id, (row_id,) = await new_set(
        api, tenant, text_columns("name", "seen", "sent", "seen_error"), [{"name": "Ada Lovelace"}]
    )
    job = await start(
        api,
        tenant,
        set_id,
        tool_id=tool_id,
        input_mapping={"name": {"column": "name"}},
        output_mapping={"seen": "body.authorization", "sent": "body.body"},
    )
    finished = await wait_for_job(api, tenant, set_id, job["id"])

    assert finished["status"] == "succeeded", finished["error"]
    assert local_http.headers_seen[-1]["authorization"] == f"Bearer {secret}"
    row = (await rows_of(session_factory, set_id))[row_id]
    assert row["seen"] == "Bearer [secret:api_key]"
    assert row["sent"] == "Ada Lovelace [secret:api_key]"
    history = await histories_of(temporal_env, [job["workflow_id"]])
    # Payloads are decoded (the plan is there) and rows never cross into history.
    # The name has a space so that no base64 text in the history can contain it by chance.
    assert "seen_error" in history and "Ada Lovelace" not in history
    assert secret not in history and secret not in json.dumps(finished)
