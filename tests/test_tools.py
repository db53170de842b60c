"""Tools: definitions, versions and runs, every run through the real Temporal server and a
real worker; HTTP steps reach a real local server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from baton.settings import Settings
from tests.local_http import LocalHttp, hit_count
from tests.support import (
    Tenant,
    api_client,
    assert_error,
    decoded,
    histories_of,
    items_of,
    worker_on,
)
from tests.support.factories import finished_run

# Other test modules import it from here; it lives in tests/support/factories.py.
wait_for_run = finished_run


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


@pytest.fixture
def tool_settings(settings: Settings) -> Settings:
    """The test's settings, with the local server allowed as a self-hosted internal API."""
    return settings.model_copy(
        update={
            "http_allow_networks": ["127.0.0.0/8"],
            "code_wall_seconds": 3.0,
            "code_cpu_seconds": 2.0,
            "code_memory_mb": 200,
        }
    )


@pytest.fixture
async def tool_worker(
    temporal_env: WorkflowEnvironment,
    tool_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Worker]:
    running = worker_on(temporal_env.client, tool_settings, session_factory)
    async with running:
        yield running


@pytest.fixture
async def api(
    tool_settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(tool_settings, temporal_env.client) as client:
        yield client


async def save(api: httpx.AsyncClient, tenant: Tenant, spec: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    assert response.status_code == 201, response.text
    tool: dict[str, Any] = response.json()
    return tool


async def run(
    api: httpx.AsyncClient,
    tenant: Tenant,
    tool_id: str,
    params: dict[str, Any] | None = None,
    *,
    timeout: float = 60,
) -> dict[str, Any]:
    started = await api.post(
        tenant.url(f"/tools/{tool_id}/runs"),
        json={"params": params or {}},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    return await finished_run(api, tenant, started.json()["id"], timeout=timeout)


def steps_by_name(run_body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run_body["steps"] if s["item"] == -1}


async def history_json(temporal_env: WorkflowEnvironment, workflow_id: str) -> str:
    """The history with its payloads decoded, so a search of it can find what they carry."""
    return await histories_of(temporal_env, [workflow_id])


async def scheduled_activities(temporal_env: WorkflowEnvironment, workflow_id: str) -> list[str]:
    history = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


# Pure steps, templating and output


async def test_pure_steps_run_inside_the_workflow_without_an_activity_each(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, temporal_env: WorkflowEnvironment
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Greeting",
            "params": [{"name": "who", "type": "text"}, {"name": "n", "type": "integer"}],
            "steps": [
                {"name": "greet", "type": "template", "template": "Hello {{ params.who }}!"},
                {
                    "name": "numbers",
                    "type": "template",
                    "template": "{{ range(params.n) | list }}",
                },
                {
                    "name": "pick",
                    "type": "transform",
                    "input": "{{ {'xs': steps.numbers.output} }}",
                    "expression": "xs[-1]",
                },
                {
                    "name": "never",
                    "type": "template",
                    "if": "params.n > 100",
                    "template": "unreachable",
                },
            ],
            "output": "{{ {'greeting': steps.greet.output, 'last': steps.pick.output} }}",
        },
    )
    body = await run(api, tenant, tool["id"], {"who": "Ada", "n": 4})
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == {"greeting": "Hello Ada!", "last": 3}
    steps = steps_by_name(body)
    assert steps["numbers"]["output"] == [0, 1, 2, 3]
    assert steps["never"]["status"] == "skipped"
    # Four pure steps and not one activity task: the run's final write is a local activity.
    assert await scheduled_activities(temporal_env, body["workflow_id"]) == []


async def test_a_tool_exposes_its_params_as_json_schema(api: httpx.AsyncClient, tenant: Tenant):
    tool = await save(
        api,
        tenant,
        {
            "name": "Typed",
            "params": [
                {"name": "text", "type": "long_text", "description": "What to read"},
                {"name": "mode", "type": "enum", "options": ["fast", "slow"], "default": "fast"},
                {"name": "tags", "type": "list_of_text", "required": False},
                {"name": "limit", "type": "integer", "required": False},
            ],
            "steps": [{"name": "t", "type": "template", "template": "{{ params.text }}"}],
        },
    )
    schema = tool["parameters_schema"]
    assert schema["properties"]["text"] == {"type": "string", "description": "What to read"}
    assert schema["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert schema["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert schema["required"] == ["text"]


async def test_run_params_are_checked_against_their_types(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Typed",
            "params": [{"name": "n", "type": "integer"}],
            "steps": [{"name": "t", "type": "template", "template": "{{ params.n }}"}],
        },
    )
    for params, param in (({}, "n"), ({"n": "three"}, "n"), ({"n": 1, "extra": 2}, "extra")):
        response = await api.post(
            tenant.url(f"/tools/{tool['id']}/runs"), json={"params": params}, headers=tenant.headers
        )
        body = assert_error(response, 422, "invalid_input")
        assert param in {d["param"] for d in body["error"]["details"]}


# Save-time validation


@pytest.mark.parametrize(
    ("steps", "step", "field", "words"),
    [
        (
            [{"name": "a", "type": "template", "template": "{{ steps.b.output }}"}],
            "a",
            "template",
            "not an earlier step",
        ),
        (
            [{"name": "a", "type": "template", "template": "{{ params.missing }}"}],
            "a",
            "template",
            "unknown param",
        ),
        (
            [{"name": "a", "type": "template", "template": "{{ params.x "}],
            "a",
            "template",
            "does not parse",
        ),
        (
            [{"name": "a", "type": "http", "url": "https://example.com/{{ foreach.item }}"}],
            "a",
            "url",
            "foreach",
        ),
        (
            [{"name": "a", "type": "transform", "input": "{{ params.x }}", "expression": "[["}],
            "a",
            "expression",
            "JMESPath",
        ),
        (
            [{"name": "a", "type": "template", "template": "{{ secrets.key }}"}],
            "a",
            "template",
            "secrets",
        ),
        (
            [{"name": "a", "type": "template", "template": "{{ snippets.intro }}"}],
            "a",
            "template",
            "unknown snippet",
        ),
    ],
)
async def test_an_invalid_tool_is_a_422_naming_the_step_and_field(
    api: httpx.AsyncClient, tenant: Tenant, steps: list[Any], step: str, field: str, words: str
):
    spec = {"name": "Bad", "params": [{"name": "x"}], "steps": steps}
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    body = assert_error(response, 422, "invalid_input")
    detail = body["error"]["details"][0]
    assert (detail["step"], detail["field"]) == (step, field), detail
    assert words in detail["message"]


async def test_an_unknown_step_type_is_a_422(api: httpx.AsyncClient, tenant: Tenant):
    spec = {"name": "Bad", "steps": [{"name": "a", "type": "teleport"}]}
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    body = assert_error(response, 422, "invalid_input")
    assert body["error"]["details"][0]["loc"][:3] == ["body", "steps", 0]


async def test_a_cycle_between_tools_is_refused_at_save_time(
    api: httpx.AsyncClient, tenant: Tenant
):
    inner = await save(
        api,
        tenant,
        {"name": "Inner", "steps": [{"name": "t", "type": "template", "template": "x"}]},
    )
    outer = await save(
        api,
        tenant,
        {"name": "Outer", "steps": [{"name": "call", "type": "tool", "tool_id": inner["id"]}]},
    )
    response = await api.put(
        tenant.url(f"/tools/{inner['id']}"),
        json={"name": "Inner", "steps": [{"name": "back", "type": "tool", "tool_id": outer["id"]}]},
        headers=tenant.headers,
    )
    body = assert_error(response, 422, "invalid_input")
    assert "call itself" in body["error"]["message"]
    unknown = await api.post(
        tenant.url("/tools"),
        json={"name": "X", "steps": [{"name": "c", "type": "tool", "tool_id": "nope"}]},
        headers=tenant.headers,
    )
    assert assert_error(unknown, 422)["error"]["details"][0]["field"] == "tool_id"


# Versions


async def test_an_update_makes_a_new_version_and_a_run_keeps_the_one_it_started_with(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker
):
    def spec(word: str) -> dict[str, Any]:
        return {
            "name": "Versioned",
            "steps": [
                {"name": "wait", "type": "delay", "seconds": 1.5},
                {"name": "say", "type": "template", "template": word},
            ],
        }

    tool = await save(api, tenant, spec("first"))
    started = await api.post(
        tenant.url(f"/tools/{tool['id']}/runs"), json={}, headers=tenant.headers
    )
    updated = await api.put(
        tenant.url(f"/tools/{tool['id']}"), json=spec("second"), headers=tenant.headers
    )
    assert updated.json()["version"] == 2

    body = await finished_run(api, tenant, started.json()["id"])
    assert (body["tool_version"], body["output"]) == (1, "first")
    assert (await run(api, tenant, tool["id"]))["output"] == "second"
    versions = await api.get(tenant.url(f"/tools/{tool['id']}/versions"), headers=tenant.headers)
    assert [v["version"] for v in versions.json()["items"]] == [1, 2]


# HTTP steps


async def test_foreach_honours_its_concurrency_limit(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, local_http: LocalHttp
):
    local_http.reset()
    tool = await save(
        api,
        tenant,
        {
            "name": "Fan out",
            "params": [{"name": "items", "type": "list_of_text"}],
            "steps": [
                {
                    "name": "fetch",
                    "type": "http",
                    "url": local_http.base + "/json?sleep=0.3&item={{ foreach.item }}",
                    "foreach": "params.items",
                    "concurrency": 2,
                },
                {
                    "name": "items",
                    "type": "transform",
                    "input": "{{ steps.fetch.output }}",
                    "expression": "[*].body.item",
                },
            ],
        },
    )
    body = await run(api, tenant, tool["id"], {"items": ["a", "b", "c", "d", "e"]})
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == ["a", "b", "c", "d", "e"]
    assert local_http.max_in_flight == 2
    assert len([s for s in body["steps"] if s["name"] == "fetch"]) == 5


async def test_a_failing_step_is_retried_then_fails_the_run_with_a_clear_error(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, local_http: LocalHttp
):
    local_http.reset()
    tool = await save(
        api,
        tenant,
        {
            "name": "Flaky",
            "steps": [
                {
                    "name": "call",
                    "type": "http",
                    "url": local_http.base + "/status/503",
                    "retries": 2,
                },
                {"name": "after", "type": "template", "template": "not reached"},
            ],
        },
    )
    body = await run(api, tenant, tool["id"])
    assert body["status"] == "failed"
    assert body["error"].startswith("step call: HTTP 503")
    assert hit_count(local_http, "/status/503") == 3
    assert "after" not in steps_by_name(body)


async def test_a_client_error_is_not_retried(
    api: httpx.AsyncClient,
    tenant: Tenant,
    tool_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
):
    local_http.reset()
    tool = await save(
        api,
        tenant,
        {
            "name": "Missing",
            "steps": [
                {
                    "name": "call",
                    "type": "http",
                    "url": local_http.base + "/status/404",
                    "retries": 3,
                }
            ],
        },
    )
    body = await run(api, tenant, tool["id"])
    assert body["status"] == "failed"
    assert hit_count(local_http, "/status/404") == 1
    # Failed in Temporal too, with the run's error as the failure's message.
    handle = temporal_env.client.get_workflow_handle(body["workflow_id"])
    with pytest.raises(WorkflowFailureError) as raised:
        await handle.result()  # the record is written a moment before the run ends
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED
    assert isinstance(raised.value.cause, ApplicationError)
    assert raised.value.cause.message == body["error"]


async def test_continue_on_error_records_the_failure_and_goes_on(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, local_http: LocalHttp
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Tolerant",
            "steps": [
                {
                    "name": "call",
                    "type": "http",
                    "url": local_http.base + "/status/400",
                    "continue_on_error": True,
                },
                {
                    "name": "after",
                    "type": "template",
                    "template": "{{ steps.call.status }}: {{ steps.call.error[:8] }}",
                },
            ],
        },
    )
    body = await run(api, tenant, tool["id"])
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == "failed: HTTP 400"
    assert steps_by_name(body)["call"]["status"] == "failed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
    ],
)
async def test_http_steps_refuse_internal_addresses_by_default(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    url: str,
):
    async with (
        worker_on(temporal_env.client, settings, session_factory),
        api_client(settings, temporal_env.client) as client,
    ):
        tool = await save(
            client,
            tenant,
            {"name": "SSRF", "steps": [{"name": "f", "type": "http", "url": url}]},
        )
        body = await run(client, tenant, tool["id"])
    assert body["status"] == "failed"
    assert "BATON_HTTP_ALLOW" in body["error"], body["error"]


async def test_a_redirect_to_loopback_is_refused(
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    local_http: LocalHttp,
):
    """Only `localhost` is allowed here; its redirect to 127.0.0.1 must not be followed."""
    local_http.reset()
    only_localhost = settings.model_copy(
        update={"http_allow_hosts": [f"localhost:{local_http.port}"]}
    )
    async with (
        worker_on(temporal_env.client, only_localhost, session_factory),
        api_client(only_localhost, temporal_env.client) as client,
    ):
        url = f"http://localhost:{local_http.port}/redirect?to=http://127.0.0.1:{local_http.port}/json"
        tool = await save(
            client,
            tenant,
            {"name": "Hop", "steps": [{"name": "f", "type": "http", "url": url}]},
        )
        body = await run(client, tenant, tool["id"])
    assert body["status"] == "failed"
    assert "loopback" in body["error"]
    assert hit_count(local_http, "/redirect") == 1
    assert hit_count(local_http, "/json") == 0


async def test_a_secret_is_used_but_never_enters_history_or_responses(
    api: httpx.AsyncClient,
    tenant: Tenant,
    tool_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
):
    secret = "sk-live-0123456789abcdef"
    put = await api.put(
        tenant.url("/secrets/api_key"), json={"value": secret}, headers=tenant.headers
    )
    assert put.status_code == 200 and secret not in put.text
    local_http.reset()
    tool = await save(
        api,
        tenant,
        {
            "name": "Authed",
            "steps": [
                {
                    "name": "call",
                    "type": "http",
                    "method": "POST",
                    "url": local_http.base + "/echo",
                    "auth_secret": "api_key",
                    "body": {"note": "key={{ secrets.api_key }}"},
                },
            ],
        },
    )
    body = await run(api, tenant, tool["id"])
    assert body["status"] == "succeeded", body["error"]
    # The server got the real secret...
    assert local_http.headers_seen[-1]["authorization"] == f"Bearer {secret}"
    # ...but what came back was scrubbed, and Temporal never saw it.
    assert body["output"]["body"]["authorization"] == "Bearer [secret:api_key]"
    assert secret not in json.dumps(body)
    history = await history_json(temporal_env, body["workflow_id"])
    assert "[secret:api_key]" in history  # the scrubbed output is there, decoded
    assert secret not in history
    listed = await api.get(tenant.url("/secrets"), headers=tenant.headers)
    assert [s["name"] for s in listed.json()["items"]] == ["api_key"]
    assert secret not in listed.text


# Code steps


async def test_a_code_step_computes_from_params_and_earlier_steps(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Compute",
            "params": [{"name": "xs", "type": "json"}],
            "steps": [
                {"name": "double", "type": "template", "template": "{{ params.xs | sum * 2 }}"},
                {
                    "name": "code",
                    "type": "code",
                    "code": "import os\nprint('working')\n"
                    "result = {'total': inputs['steps']['double']['output'],"
                    " 'env': len(os.environ)}",
                },
            ],
        },
    )
    body = await run(api, tenant, tool["id"], {"xs": [1, 2, 3]})
    assert body["status"] == "succeeded", body["error"]
    assert body["output"]["total"] == 12


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("while True:\n    pass\n", "limit"),
        ("x = 'a' * (10 ** 10)\n", "memory"),
        ("def main(inputs):\n    return 1 / 0\n", "ZeroDivisionError"),
    ],
)
async def test_runaway_code_is_stopped_with_a_clear_error_and_the_worker_lives_on(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, code: str, words: str
):
    bad = await save(
        api,
        tenant,
        {
            "name": "Bad code",
            "steps": [{"name": "run", "type": "code", "code": code, "retries": 0}],
        },
    )
    body = await run(api, tenant, bad["id"])
    assert body["status"] == "failed"
    assert words in body["error"], body["error"]

    good = await save(
        api,
        tenant,
        {
            "name": "Good code",
            "steps": [{"name": "run", "type": "code", "code": "result = 41 + 1"}],
        },
    )
    assert (await run(api, tenant, good["id"]))["output"] == 42


# Delay, nested tools, LLM


async def test_a_tool_step_calls_another_tool_as_a_child_workflow(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker
):
    inner = await save(
        api,
        tenant,
        {
            "name": "Shout",
            "params": [{"name": "word"}],
            "steps": [{"name": "up", "type": "template", "template": "{{ params.word | upper }}!"}],
        },
    )
    outer = await save(
        api,
        tenant,
        {
            "name": "Relay",
            "steps": [
                {"name": "call", "type": "tool", "tool_id": inner["id"], "params": {"word": "hey"}},
                {"name": "wrap", "type": "template", "template": "<{{ steps.call.output }}>"},
            ],
        },
    )
    body = await run(api, tenant, outer["id"])
    assert body["status"] == "succeeded", body["error"]
    assert body["output"] == "<HEY!>"


async def test_an_llm_step_answers_with_the_scripted_model(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, temporal_env: WorkflowEnvironment
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Ask",
            "params": [{"name": "q"}],
            "steps": [{"name": "ask", "type": "llm", "prompt": "Q: {{ params.q }}"}],
        },
    )
    body = await run(api, tenant, tool["id"], {"q": "why?"})
    assert body["status"] == "succeeded", body["error"]
    assert body["output"].endswith("Q: why?")
    history = await temporal_env.client.get_workflow_handle(body["workflow_id"]).fetch_history()
    summaries = [
        (await decoded(temporal_env.client, e.user_metadata.summary)).data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert '"step ask: llm scripted:echo"' in summaries


# Cancel, wait, templates, export


async def test_a_running_http_step_notices_a_cancel(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, local_http: LocalHttp
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Slow",
            "steps": [
                {
                    "name": "slow",
                    "type": "http",
                    "url": local_http.base + "/slow?seconds=60",
                    "timeout_seconds": 120,
                }
            ],
        },
    )
    started = await api.post(
        tenant.url(f"/tools/{tool['id']}/runs"), json={}, headers=tenant.headers
    )
    run_id = started.json()["id"]
    await asyncio.sleep(1.5)
    cancelled = await api.post(tenant.url(f"/tool-runs/{run_id}/cancel"), headers=tenant.headers)
    assert cancelled.status_code == 202
    body = await finished_run(api, tenant, run_id, timeout=20)
    assert body["status"] == "cancelled"
    again = await api.post(tenant.url(f"/tool-runs/{run_id}/cancel"), headers=tenant.headers)
    assert_error(again, 409, "conflict")


async def test_wait_returns_the_result_in_the_same_call(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker
):
    tool = await save(
        api,
        tenant,
        {"name": "Quick", "steps": [{"name": "t", "type": "template", "template": "done"}]},
    )
    response = await api.post(
        tenant.url(f"/tools/{tool['id']}/runs"), json={"wait": True}, headers=tenant.headers
    )
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["output"]) == ("succeeded", "done")


async def test_at_least_ten_templates_and_a_cloned_one_runs(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker, local_http: LocalHttp
):
    templates = await items_of(api, "/api/v1/tool-templates", {})
    assert len(templates) >= 10
    results = {}
    for template_id, params in (
        ("word-count", {"text": "a b a c a b"}),
        ("compute-python", {"data": [2, 4]}),
        ("summarise-text", {"text": "Baton runs agents."}),
        ("classify-text", {"text": "I love it", "labels": ["positive", "negative"]}),
        ("fetch-page-text", {"url": local_http.base + "/page"}),
        ("fetch-json-fields", {"url": local_http.base + "/json", "fields": "ok,items"}),
        ("draft-email", {"recipient": "Ada", "points": ["hello"]}),
        ("summarise-each", {"texts": ["one", "two"]}),
        ("translate", {"text": "hello"}),
        ("extract-fields", {"text": "Ada, ada@example.com"}),
    ):
        cloned = await api.post(
            tenant.url(f"/tool-templates/{template_id}/clone"), headers=tenant.headers
        )
        assert cloned.status_code == 201, cloned.text
        body = await run(api, tenant, cloned.json()["id"], params)
        assert body["status"] == "succeeded", (template_id, body["error"])
        results[template_id] = body["output"]
    assert results["word-count"] == {
        "words": 6,
        "top": [
            ["a", 3],
            ["b", 2],
            ["c", 1],
        ][:5],
    }
    assert results["compute-python"] == {"count": 2, "sum": 6, "mean": 3.0}
    assert results["fetch-page-text"] == "Hello World"
    assert results["fetch-json-fields"] == {"ok": True, "items": [1, 2, 3]}
    assert isinstance(results["classify-text"], str)
    unknown = await api.post(tenant.url("/tool-templates/nope/clone"), headers=tenant.headers)
    assert_error(unknown, 404)


async def test_a_tool_exports_to_json_and_yaml_and_imports_back(
    api: httpx.AsyncClient, tenant: Tenant, tool_worker: Worker
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Portable",
            "params": [{"name": "who"}],
            "steps": [
                {
                    "name": "hi",
                    "type": "template",
                    "template": "hi {{ params.who }}",
                    "if": "params.who",
                }
            ],
        },
    )
    as_json = await api.get(tenant.url(f"/tools/{tool['id']}/export"), headers=tenant.headers)
    as_yaml = await api.get(
        tenant.url(f"/tools/{tool['id']}/export?format=yaml"), headers=tenant.headers
    )
    assert yaml.safe_load(as_yaml.text) == as_json.json()
    assert (as_json.json()["kind"], as_json.json()["version"]) == ("tool", 1)
    assert as_json.json()["definition"]["steps"][0]["if"] == "params.who"

    imported = await api.post(
        tenant.url("/tools/import"),
        content=as_yaml.text.encode(),
        headers={**tenant.headers, "Content-Type": "application/yaml"},
    )
    assert imported.status_code == 201, imported.text
    assert (await run(api, tenant, imported.json()["id"], {"who": "Bo"}))["output"] == "hi Bo"
    broken = await api.post(
        tenant.url("/tools/import"), content=b"name: [unclosed", headers=tenant.headers
    )
    assert_error(broken, 422)


async def test_tools_of_another_tenant_are_not_found(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    tool = await save(
        api, tenant, {"name": "Mine", "steps": [{"name": "t", "type": "template", "template": "x"}]}
    )
    for method, path in (("GET", ""), ("GET", "/versions"), ("POST", "/runs")):
        response = await api.request(
            method,
            other_tenant.url(f"/tools/{tool['id']}{path}"),
            headers=other_tenant.headers,
            json={} if method == "POST" else None,
        )
        assert_error(response, 404)


async def test_tool_runs_skip_the_sandbox_unless_the_setting_puts_them_in_it(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    task_queue: str,
):
    """Production workers run ToolRunWorkflow (which opts out) without the sandbox; the test
    suite's workers, like any with `sandbox_all_workflows`, run it in the sandbox."""
    assert settings.sandbox_all_workflows
    suite = worker_on(temporal_env.client, settings, session_factory).config()
    assert isinstance(suite["unsandboxed_workflow_runner"], SandboxedWorkflowRunner)
    production = settings.model_copy(
        update={"sandbox_all_workflows": False, "temporal_task_queue": f"{task_queue}-production"}
    )
    plain = worker_on(temporal_env.client, production, session_factory).config()
    assert isinstance(plain["unsandboxed_workflow_runner"], UnsandboxedWorkflowRunner)
    assert isinstance(plain["workflow_runner"], SandboxedWorkflowRunner)
