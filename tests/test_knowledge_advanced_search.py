"""Advanced knowledge search through the API: a model rewrites the question before the search
and checks the hits answer it, citing row ids that are checked against the hits; on the
offline `scripted:search` model, on a real OpenAI wire protocol (charged like any model call
on the installation's key), and as the "Advanced knowledge search" tool template."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from temporalio.worker import Worker

from baton.domain.models import SCRIPTED_LABEL
from tests.fakes.openai_server import FakeOpenAI
from tests.support import Tenant, assert_error, auth, create_token
from tests.support.factories import filled_set
from tests.test_credits import credits, metered_api
from tests.test_tools import run

__all__ = ["metered_api"]  # a fixture of test_credits, used here by name

FAQ = [
    {"question": "How do I reset my password?", "answer": "Choose Forgot password."},
    {"question": "Can I change my plan?", "answer": "Yes, under Settings, Billing."},
    {"question": "Where is my invoice?", "answer": "Settings, Billing, Invoices."},
]


async def faq_set(api: httpx.AsyncClient, tenant: Tenant) -> tuple[str, list[int]]:
    """A set without an embedding provider (so searched lexically), filled through the API."""
    columns = [{"name": "question"}, {"name": "answer"}]
    made, row_ids = await filled_set(api, tenant, FAQ, name="faq", columns=columns)
    set_id: str = made["id"]
    return set_id, row_ids


async def advanced(
    api: httpx.AsyncClient, tenant: Tenant, set_id: str, **body: Any
) -> httpx.Response:
    return await api.post(
        tenant.url(f"/knowledge/sets/{set_id}/search/advanced"), json=body, headers=tenant.headers
    )


async def test_the_rewrite_searches_what_the_question_names_and_the_answer_cites_the_hit(
    api: httpx.AsyncClient, tenant: Tenant
):
    set_id, (_, plan_row, _) = await faq_set(api, tenant)
    question = "How can I change my plan?"

    response = await advanced(api, tenant, set_id, query=question, model="scripted:search")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["query"], body["search_query"], body["rewritten"]) == (
        question,
        "change plan",
        True,
    )
    assert [hit["row_id"] for hit in body["hits"]] == [plan_row]
    answer = body["answer"]
    assert (answer["answered"], answer["citations"], answer["dropped_citations"]) == (
        True,
        [plan_row],
        [],
    )
    assert answer["summary"].startswith(SCRIPTED_LABEL)
    assert (body["model"], body["offline_model"]) == ("scripted:search", True)
    assert body["usage"]["input_tokens"] > 0


async def test_without_the_rewrite_the_question_is_searched_as_asked_and_checked(
    api: httpx.AsyncClient, tenant: Tenant
):
    set_id, row_ids = await faq_set(api, tenant)
    response = await advanced(
        api, tenant, set_id, query="Where is my invoice?", model="scripted:search", rewrite=False
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["search_query"], body["rewritten"]) == ("Where is my invoice?", False)
    assert row_ids[2] in {hit["row_id"] for hit in body["hits"]}
    # Only the invoice row names what was asked about ("invoice"), so only it is cited, however
    # many rows share the question's other words.
    assert body["answer"]["citations"] == [row_ids[2]]


async def test_a_rewrite_alone_gives_the_hits_and_no_answer(api: httpx.AsyncClient, tenant: Tenant):
    set_id, row_ids = await faq_set(api, tenant)
    response = await advanced(
        api, tenant, set_id, query="Forgot my password", model="scripted:search", answer=False
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["search_query"], body["answer"]) == ("forgot password", None)
    assert [hit["row_id"] for hit in body["hits"]] == [row_ids[0]]


async def test_a_citation_that_is_no_hit_is_dropped_and_the_calls_are_charged_once_each(
    metered_api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
):
    set_id, row_ids = await faq_set(metered_api, tenant)
    before = (await credits(metered_api, tenant))["vendor_credits"]["used"]
    openai_server.reply_text(
        '{"query": "', 'change plan"}', prompt_tokens=1000, completion_tokens=500
    )
    openai_server.reply_text(
        json.dumps(
            {"answered": True, "summary": "Under Settings.", "citations": [row_ids[1], 999]}
        ),
        prompt_tokens=1000,
        completion_tokens=500,
    )

    response = await advanced(
        metered_api, tenant, set_id, query="How can I change my plan?", model="openai:gpt-4o-mini"
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["search_query"] == "change plan"
    assert body["answer"] == {
        "answered": True,
        "summary": "Under Settings.",
        "citations": [row_ids[1]],
        "dropped_citations": [999],
    }
    assert body["offline_model"] is False
    assert body["usage"] == {"input_tokens": 2000, "output_tokens": 1000, "cached_input_tokens": 0}
    rewrite, answer = (request.body for request in openai_server.requests)
    assert json.loads(rewrite["messages"][-1]["content"]) == {
        "question": "How can I change my plan?"
    }
    assert rewrite["response_format"]["json_schema"]["schema"]["required"] == ["query"]
    shown = json.loads(answer["messages"][-1]["content"])
    assert [hit["row_id"] for hit in shown["hits"]] == [row_ids[1]]
    assert shown["hits"][0]["row"] == FAQ[1]
    # gpt-4o-mini: 1,000 input tokens at 0.00015 and 500 output tokens at 0.0006 per 1,000,
    # twice.
    used = (await credits(metered_api, tenant))["vendor_credits"]["used"]
    assert used - before == pytest.approx(0.0009)


async def test_an_answer_that_cites_no_hit_does_not_count_as_answered(
    metered_api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
):
    set_id, _ = await faq_set(metered_api, tenant)
    openai_server.reply_text(json.dumps({"answered": True, "summary": "Yes.", "citations": [4242]}))
    response = await advanced(
        metered_api,
        tenant,
        set_id,
        query="invoice",
        model="openai:gpt-4o-mini",
        rewrite=False,
    )
    assert response.status_code == 200, response.text
    answer = response.json()["answer"]
    assert (answer["answered"], answer["citations"], answer["dropped_citations"]) == (
        False,
        [],
        [4242],
    )


async def test_a_model_that_answers_other_than_the_json_asked_for_is_a_502(
    metered_api: httpx.AsyncClient, tenant: Tenant, openai_server: FakeOpenAI
):
    set_id, _ = await faq_set(metered_api, tenant)
    openai_server.reply_text("Sure! Try searching for plans.")
    response = await advanced(
        metered_api, tenant, set_id, query="change plan", model="openai:gpt-4o-mini"
    )
    body = assert_error(response, 502, "provider_error")
    assert "did not answer with the JSON asked for" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "model": "scripted:nope"}, "model"),
        ({"query": "x", "model": "nowhere:model"}, "model"),
        ({"query": "x"}, "model"),
        ({"query": "x", "model": "scripted:search", "top_k": 21}, "top_k"),
        ({"query": "x", "model": "scripted:search", "rewrite": False, "answer": False}, None),
        ({"query": "", "model": "scripted:search"}, "query"),
    ],
)
async def test_a_bad_request_is_a_422_naming_what_to_fix(
    api: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str | None
):
    set_id, _ = await faq_set(api, tenant)
    response = await advanced(api, tenant, set_id, **body)
    error = assert_error(response, 422)["error"]
    if field is not None:
        assert field in json.dumps(error["details"])
    else:
        assert "rewrite, answer or both" in error["message"]


async def test_a_viewer_may_search_but_not_spend_model_calls(
    api: httpx.AsyncClient, tenant: Tenant
):
    set_id, _ = await faq_set(api, tenant)
    viewer = auth((await create_token(api, tenant.headers, role="viewer"))["token"])
    url = tenant.url(f"/knowledge/sets/{set_id}")
    plain = await api.post(f"{url}/search", json={"query": "plan"}, headers=viewer)
    assert plain.status_code == 200, plain.text
    refused = await api.post(
        f"{url}/search/advanced",
        json={"query": "plan", "model": "scripted:search"},
        headers=viewer,
    )
    assert_error(refused, 403, "permission_denied")


async def test_the_tool_template_rewrites_searches_and_answers_with_checked_citations(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    set_id, (_, plan_row, _) = await faq_set(api, tenant)
    cloned = await api.post(
        tenant.url("/tool-templates/advanced-knowledge-search/clone"), headers=tenant.headers
    )
    assert cloned.status_code == 201, cloned.text
    steps = [step["type"] for step in cloned.json()["steps"]]
    assert steps == ["llm", "knowledge_search", "llm"]

    result = await run(
        api,
        tenant,
        cloned.json()["id"],
        {"question": "How can I change my plan?", "knowledge_set": set_id},
    )

    assert result["status"] == "succeeded", result["error"]
    output = result["output"]
    assert output["search_query"] == "change plan"
    assert [hit["row_id"] for hit in output["hits"]] == [plan_row]
    assert (output["answered"], output["citations"], output["dropped_citations"]) == (
        True,
        [plan_row],
        [],
    )
    assert output["summary"].startswith(SCRIPTED_LABEL)
