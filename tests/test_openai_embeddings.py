"""The `openai` embedding provider: vectors from an OpenAI-compatible `/v1/embeddings`
endpoint (a local server speaking the wire protocol), reached with a project integration's
key, which stays out of Temporal's history, and only at an address the egress guard allows
(the operator here allows the local server by its host and port)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.domain.knowledge import embed_workflow_id
from baton.domain.llm import ProviderConfig
from baton.integrations.llm import ProviderError
from baton.knowledge.embeddings import OpenAIEmbedder
from baton.settings import Settings
from tests.fakes.embeddings_server import FakeOpenAIEmbeddings
from tests.support import Tenant, histories_of, items_of
from tests.support.factories import filled_set
from tests.test_knowledge_search import embedded, search, set_url

KEY = "sk-embeddings-secret-987654"
ROWS = [
    {"title": "tea", "text": "green tea leaves are steamed and dried"},
    {"title": "bikes", "text": "a bicycle chain needs oil every month"},
    {"title": "rain", "text": "clouds bring rain over the hills"},
]


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[FakeOpenAIEmbeddings]:
    server = FakeOpenAIEmbeddings()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, embeddings_server: FakeOpenAIEmbeddings) -> Settings:
    return settings.model_copy(update={"http_allow_hosts": [f"127.0.0.1:{embeddings_server.port}"]})


async def openai_set(
    api: httpx.AsyncClient, tenant: Tenant, server: FakeOpenAIEmbeddings
) -> tuple[dict[str, Any], list[int]]:
    integration = await api.post(
        tenant.url("/integrations"),
        json={"name": "embedder", "kind": "openai", "api_key": KEY, "base_url": server.base_url},
        headers=tenant.headers,
    )
    assert integration.status_code == 201, integration.text
    return await filled_set(
        api,
        tenant,
        ROWS,
        name="notes",
        columns=[{"name": "title"}, {"name": "text"}],
        embedding={"provider": "openai", "integration": "embedder", "model": "embed-test"},
    )


async def test_rows_are_embedded_by_the_integrations_endpoint_and_found_by_vector(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    embeddings_server: FakeOpenAIEmbeddings,
):
    embeddings_server.reset()
    knowledge_set, row_ids = await openai_set(api, tenant, embeddings_server)
    await embedded(temporal_env, knowledge_set)

    rows_request = embeddings_server.requests[0]
    assert rows_request.credential == KEY
    assert rows_request.body["model"] == "embed-test"
    assert len(rows_request.body["input"]) == 3

    hits = await search(
        api, tenant, knowledge_set, query="oil for my bicycle", mode="vector", top_k=3
    )
    assert hits[0]["row_id"] == row_ids[1]
    assert hits[0]["row"] == ROWS[1]
    # The query was embedded by the same endpoint, with the same key.
    assert embeddings_server.requests[-1].body["input"] == ["oil for my bicycle"]
    assert embeddings_server.requests[-1].credential == KEY

    history = await histories_of(temporal_env, [embed_workflow_id(knowledge_set["id"])])
    assert knowledge_set["id"] in history  # the decoded payloads are searched
    assert KEY not in history
    jobs = await api.get(set_url(tenant, knowledge_set, "/jobs"), headers=tenant.headers)
    assert KEY not in jobs.text
    assert any(
        job["kind"] == "embed" and job["status"] == "succeeded" for job in jobs.json()["items"]
    )


async def test_a_refusing_endpoint_fails_the_embedding_job_with_its_reason(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    embeddings_server: FakeOpenAIEmbeddings,
):
    embeddings_server.reset()
    embeddings_server.reply_error(401, "invalid api key {key}")
    knowledge_set, _ = await openai_set(api, tenant, embeddings_server)
    handle = temporal_env.client.get_workflow_handle(embed_workflow_id(knowledge_set["id"]))
    # A 401 is not retried: the workflow records the failure and ends Failed.
    with pytest.raises(WorkflowFailureError) as raised:
        await handle.result()
    assert "HTTP 401" in str(raised.value.cause)
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    jobs = await items_of(api, set_url(tenant, knowledge_set, "/jobs"), tenant.headers)
    embed = next(job for job in jobs if job["kind"] == "embed")
    assert embed["status"] == "failed"
    assert "HTTP 401" in embed["error"] and "check the API key" in embed["error"]
    # The provider quoted the key back; Baton does not repeat it.
    assert KEY not in embed["error"]


async def test_an_embedding_endpoint_the_guard_refuses_is_never_sent_the_key(
    embeddings_server: FakeOpenAIEmbeddings,
):
    embeddings_server.reset()
    # A project's base URL (not the operator's own), with nothing allowed: as an integration
    # stored before base URLs were checked would be.
    embedder = OpenAIEmbedder(ProviderConfig(api_key=KEY, base_url=embeddings_server.base_url))

    with pytest.raises(ProviderError) as raised:
        await embedder.embed(["a row"])

    assert "was not called: 127.0.0.1 is a loopback address" in raised.value.message
    assert not raised.value.retryable and KEY not in raised.value.message
    assert embeddings_server.requests == []
