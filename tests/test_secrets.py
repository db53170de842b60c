"""Secrets cannot be read back. A secret is only ever sent out, as a bare
`{{ secrets.<name> }}` in an http step's request; whatever comes back (a step's output, an
error, a task's events, Temporal's history, the database, the API) carries it in no form.
Tried as an editor would who wants to read one, over the real API, a real worker and a real
local server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.db.repositories import tools as tool_repo
from baton.db.tables import ToolRun, ToolRunStep
from baton.domain.tools import ToolSpec
from baton.scrubbing import SecretScrubber
from baton.settings import Settings
from tests.local_http import LocalHttp
from tests.support import Tenant, api_client, assert_error, histories_of, worker_on
from tests.test_enrichment import new_set, rows_of, wait_for_job
from tests.test_task_events import read_stream
from tests.test_tools import run, save, steps_by_name

CANARY = "CANARY2 s p@ce/+=&?#x"
# One that JSON and repr escape, and that no header may carry.
QUOTED = 'CANARY3 "q\\uote" é/'


def forms_of(value: str) -> set[str]:
    """What a secret could be read back as: as is, URL-encoded, base64 (alone or inside a
    Basic token), each also JSON-escaped once and twice, as it would sit in a JSON text."""
    raw = value.encode()
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode()
    plain = {
        value,
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        standard,
        standard.rstrip("="),
        url_safe,
        url_safe.rstrip("="),
        base64.b64encode(b"user:" + raw).decode(),
    }
    escaped: set[str] = set()
    for form in plain:
        for ensure_ascii in (True, False):
            once = json.dumps(form, ensure_ascii=ensure_ascii)[1:-1]
            escaped |= {once, json.dumps(once, ensure_ascii=ensure_ascii)[1:-1]}
    return plain | escaped


FORMS = forms_of(CANARY) | forms_of(QUOTED)


def leaked(text: str) -> list[str]:
    return sorted(form for form in FORMS if form in text)


@pytest.fixture(scope="module")
def local_http() -> Iterator[LocalHttp]:
    server = LocalHttp().start()
    yield server
    server.stop()


@pytest.fixture
def secret_settings(settings: Settings) -> Settings:
    """The local server allowed, as a self-hosted internal API would be."""
    return settings.model_copy(update={"http_allow_networks": ["127.0.0.0/8"]})


@pytest.fixture
async def api(
    secret_settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(secret_settings, temporal_env.client) as client:
        yield client


@pytest.fixture
async def secret_worker(
    temporal_env: WorkflowEnvironment,
    secret_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Worker]:
    async with worker_on(temporal_env.client, secret_settings, session_factory) as running:
        yield running


async def put_secrets(api: httpx.AsyncClient, tenant: Tenant) -> None:
    for name, value in (("canary", CANARY), ("quoted", QUOTED), ("k", CANARY)):
        put = await api.put(
            tenant.url(f"/secrets/{name}"), json={"value": value}, headers=tenant.headers
        )
        assert put.status_code == 200, put.text


def mirror_tool(local_http: LocalHttp) -> dict[str, Any]:
    """Sends both secrets in the query, a header, the Authorization header and a JSON body
    to a server that sends all of it back, each query value in every common encoding: once
    read as JSON, once as text."""
    request: dict[str, Any] = {
        "type": "http",
        "url": local_http.base + "/mirror",
        "query": {"canary": "{{ secrets.canary }}", "quoted": "{{ secrets.quoted }}"},
        "headers": {"X-Canary": "{{ secrets.canary }}"},
        "auth_secret": "canary",
    }
    return {
        "name": "Mirror",
        "steps": [
            {"name": "mirror", **request},
            {
                "name": "mirror_text",
                **request,
                "method": "POST",
                "body": {"canary": "{{ secrets.canary }}", "quoted": "{{ secrets.quoted }}"},
                "response": "text",
            },
        ],
        "output": "{{ steps.mirror.output }}",
    }


def assert_sent_for_real(local_http: LocalHttp) -> None:
    """The server got the real values: only what came back was scrubbed."""
    assert local_http.queries_seen[-1] == {"canary": CANARY, "quoted": QUOTED}
    headers = local_http.headers_seen[-1]
    assert headers["x-canary"] == CANARY
    assert headers["authorization"] == f"Bearer {CANARY}"


# Saving: where and how a template may read a secret


TRICKS = [
    "{{ secrets.k | reverse }}",
    "{{ secrets.k | list | join(' ') }}",
    "{{ secrets.k | lower }}",
    "{{ secrets.k ~ '' }}",
    "{{ secrets.k + '' }}",
    "{{ secrets.k[::-1] }}",
    "{{ secrets.k[0] }}",
    "{{ secrets.k.upper() }}",
    "{{ secrets['k'] | reverse }}",
    "{{ secrets }}",
    "{{ secrets | list }}",
    "{{ secrets[params.x] }}",
    "{{ secrets.k if params.x else '' }}",
    "{{ secrets.k is sameas params.x }}",
    "{% if secrets.k.startswith('C') %}C{% endif %}",
    "{% for c in secrets.k %}{{ c }} {% endfor %}",
    "{% for c in [1] %}{{ secrets.k }}{% endfor %}",
    "{% set s = secrets.k %}{{ s | reverse }}",
    "{% set s %}{{ secrets.k }}{% endset %}{{ s | reverse }}",
    "{% macro m(v) %}{{ v | reverse }}{% endmacro %}{{ m(secrets.k) }}",
    "{% macro m() %}{{ caller() | reverse }}{% endmacro %}"
    "{% call m() %}{{ secrets.k }}{% endcall %}",
    "{% filter reverse %}{{ secrets.k }}{% endfilter %}",
    "{% block b %}{{ secrets.k }}{% endblock %}{{ self.b() | reverse }}",
    "{% autoescape true %}{{ secrets.k }}{% endautoescape %}",
    "{% with s = secrets.k %}{{ s | reverse }}{% endwith %}",
]


@pytest.mark.parametrize("trick", TRICKS)
async def test_a_secret_that_is_more_than_a_bare_name_is_a_422_in_every_field_that_sends(
    api: httpx.AsyncClient, tenant: Tenant, trick: str
):
    where = [
        ("url", {"url": "https://example.com/" + trick}),
        ("query.q", {"query": {"q": trick}}),
        ("headers.X-Key", {"headers": {"X-Key": trick}}),
        ("body", {"method": "POST", "body": trick}),
        ("body.note", {"method": "POST", "body": {"note": trick}}),
    ]
    for field, fields in where:
        step = {"name": "send", "type": "http", "url": "https://example.com/", **fields}
        spec = {"name": "Leak", "params": [{"name": "x"}], "steps": [step]}
        response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
        details = assert_error(response, 422, "invalid_input")["error"]["details"]
        assert [(d["step"], d["field"]) for d in details] == [("send", field)], (field, details)
        assert "bare {{ secrets." in details[0]["message"]


async def test_a_bare_secret_in_the_request_of_an_http_step_may_be_saved(
    api: httpx.AsyncClient, tenant: Tenant
):
    step = {
        "name": "send",
        "type": "http",
        "method": "POST",
        "url": "https://example.com/{{ secrets.k }}?a={{ secrets['k'] }}",
        "query": {"q": "{{ secrets.k }}"},
        "headers": {"Authorization": "Bearer {{ secrets.k }}"},
        "body": {"note": "key={{ secrets.k }}", "list": ["{{ secrets.k }}"]},
        "auth_secret": "k",
    }
    guarded = {**step, "name": "maybe", "body": "{% if params.x %}{{ secrets.k }}{% endif %}"}
    spec = {"name": "Send", "params": [{"name": "x"}], "steps": [step, guarded]}
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("step", "field"),
    [
        ({"type": "llm", "prompt": "{{ secrets.k }}"}, "prompt"),
        ({"type": "llm", "prompt": "hi", "system_prompt": "{{ secrets.k }}"}, "system_prompt"),
        ({"type": "template", "template": "{{ secrets.k }}"}, "template"),
        ({"type": "transform", "input": "{{ secrets.k }}", "expression": "@"}, "input"),
        ({"type": "knowledge_search", "knowledge_set": "s", "query": "{{ secrets.k }}"}, "query"),
        (
            {"type": "knowledge_insert", "knowledge_set": "s", "rows": {"k": "{{ secrets.k }}"}},
            "rows.k",
        ),
        ({"type": "tool", "tool_id": "t", "params": {"p": "{{ secrets.k }}"}}, "params.p"),
        ({"type": "http", "url": "https://example.com", "if": "secrets.k"}, "if"),
        ({"type": "http", "url": "https://example.com", "foreach": "{{ secrets.k }}"}, "foreach"),
    ],
)
async def test_a_secret_anywhere_but_an_http_steps_request_is_a_422_naming_the_step_and_field(
    api: httpx.AsyncClient, tenant: Tenant, step: dict[str, Any], field: str
):
    spec = {"name": "Leak", "steps": [{"name": "leak", **step}]}
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    details = assert_error(response, 422, "invalid_input")["error"]["details"]
    about_secrets = [d for d in details if "secrets" in d["message"]]
    assert [(d["step"], d["field"]) for d in about_secrets] == [("leak", field)], details
    assert (
        "only be used in an http step's url, query, headers or body"
        in (about_secrets[0]["message"])
    )


async def test_a_secret_in_a_tools_output_is_a_422(api: httpx.AsyncClient, tenant: Tenant):
    spec = {
        "name": "Leak",
        "steps": [{"name": "a", "type": "template", "template": "x"}],
        "output": "{{ secrets.k }}",
    }
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    details = assert_error(response, 422, "invalid_input")["error"]["details"]
    assert [(d["step"], d["field"]) for d in details] == [(None, "output")]


async def test_an_agents_texts_and_its_webhooks_cannot_read_a_secret(
    api: httpx.AsyncClient, tenant: Tenant
):
    for field in ("system_prompt", "welcome_message"):
        body = {"name": "Leaky", field: "Say {{ secrets.k | reverse }}"}
        response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
        details = assert_error(response, 422, "invalid_input")["error"]["details"]
        assert details[0]["field"] == field, details
    agent = await api.post(tenant.url("/agents"), json={"name": "Hooked"}, headers=tenant.headers)
    assert agent.status_code == 201, agent.text
    hooks = tenant.url(f"/agents/{agent.json()['id']}/webhooks")
    for body, field in (
        ({"message_template": "{{ secrets.k }}"}, "message_template"),
        (
            {"message_template": "ok", "params_template": {"p": "{{ secrets.k }}"}},
            "params_template",
        ),
        (
            {"message_template": "ok", "dedupe_key_template": "{{ secrets.k }}"},
            "dedupe_key_template",
        ),
    ):
        response = await api.post(hooks, json=body, headers=tenant.headers)
        details = assert_error(response, 422, "invalid_input")["error"]["details"]
        assert details[0]["loc"][:2] == ["body", field], (body, details)


async def test_an_enrichment_cannot_map_a_secret_into_a_tools_params(
    api: httpx.AsyncClient, tenant: Tenant
):
    tool = await save(
        api,
        tenant,
        {
            "name": "Echo",
            "params": [{"name": "name"}],
            "steps": [{"name": "say", "type": "template", "template": "{{ params.name }}"}],
        },
    )
    set_id, _ = await new_set(api, tenant, [{"name": "name"}], [{"name": "Ada"}])
    response = await api.post(
        tenant.url(f"/knowledge/sets/{set_id}/enrichments"),
        json={
            "tool_id": tool["id"],
            "input_mapping": {"name": {"template": "{{ secrets.k }}"}},
            "output_mapping": {"name": "@"},
        },
        headers=tenant.headers,
    )
    details = assert_error(response, 422, "invalid_input")["error"]["details"]
    assert details[0]["field"] == "input_mapping.name.template", details


# Running: what comes back


async def test_an_llm_step_saved_before_the_rule_is_given_no_secret(
    api: httpx.AsyncClient,
    tenant: Tenant,
    secret_worker: Worker,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    """The tool the finding used, stored as an older Baton would have stored it: at run time
    only http steps are given secrets, whatever the definition says."""
    await put_secrets(api, tenant)
    spec = ToolSpec.model_validate(
        {
            "name": "Reverse",
            "steps": [
                {
                    "name": "ask",
                    "type": "llm",
                    "model": "scripted:echo",
                    "prompt": "{{ secrets.k | reverse }} {{ secrets.k | list | join(' ') }}",
                }
            ],
        }
    )
    async with session_factory.begin() as session:
        tool = await tool_repo.create_tool(session=session, project_id=tenant.project_id, spec=spec)
    body = await run(api, tenant, tool.id)

    assert body["status"] == "failed"
    assert "secrets" in body["error"] and "undefined" in body["error"]
    reversed_forms = [CANARY[::-1], " ".join(CANARY), CANARY]
    history = await histories_of(temporal_env, [body["workflow_id"]])
    for text in (json.dumps(body, ensure_ascii=False), history):
        assert not [form for form in reversed_forms if form in text]


async def test_a_secret_echoed_back_in_any_encoding_is_in_no_output_row_history_or_response(
    api: httpx.AsyncClient,
    tenant: Tenant,
    secret_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    await put_secrets(api, tenant)
    local_http.reset()
    tool = await save(api, tenant, mirror_tool(local_http))
    body = await run(api, tenant, tool["id"])

    assert body["status"] == "succeeded", body["error"]
    assert_sent_for_real(local_http)
    steps = steps_by_name(body)
    mirrored = steps["mirror"]["output"]
    # The url carries the query encoded; the server's answer carries it in every encoding.
    assert mirrored["url"].endswith("/mirror?canary=[secret:canary]&quoted=[secret:quoted]")
    for name, encoded in mirrored["body"]["encoded"].items():
        assert all(f"[secret:{name}]" in form for form in encoded.values()), encoded
    assert mirrored["body"]["headers"]["x-canary"] == "[secret:canary]"
    # Read as text, the JSON body it got back sits JSON-escaped inside its JSON answer.
    assert r"\"quoted\":\"[secret:quoted]\"" in steps["mirror_text"]["output"]["body"]

    response = await api.get(tenant.url(f"/tool-runs/{body['id']}"), headers=tenant.headers)
    assert leaked(response.text) == []
    assert leaked(json.dumps(response.json(), ensure_ascii=False)) == []
    async with session_factory() as session:
        stored = [
            (run_row.output, run_row.error)
            for run_row in await session.scalars(select(ToolRun).where(ToolRun.id == body["id"]))
        ] + [
            (step.output, step.error)
            for step in await session.scalars(
                select(ToolRunStep).where(ToolRunStep.run_id == body["id"])
            )
        ]
    assert len(stored) == 3
    assert leaked(json.dumps(stored, ensure_ascii=False)) == []
    history = await histories_of(temporal_env, [body["workflow_id"]])
    assert "[secret:quoted]" in history  # the payloads are decoded: the outputs are there
    assert leaked(history) == []


async def test_a_secret_an_agents_tool_gets_back_is_in_no_event_message_or_history(
    api: httpx.AsyncClient,
    tenant: Tenant,
    secret_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
):
    await put_secrets(api, tenant)
    local_http.reset()
    tool = await save(api, tenant, mirror_tool(local_http))
    agent = await api.post(
        tenant.url("/agents"),
        json={"name": "Mirror", "model": "scripted:tools", "tools": [{"tool_id": tool["id"]}]},
        headers=tenant.headers,
    )
    assert agent.status_code == 201, agent.text
    started = await api.post(
        tenant.url(f"/agents/{agent.json()['id']}/tasks"),
        json={"message": "call mirror {}"},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    task_id = started.json()["id"]
    async with asyncio.timeout(60):
        while True:
            task = await api.get(tenant.url(f"/tasks/{task_id}"), headers=tenant.headers)
            if task.json()["status"] in ("completed", "failed", "cancelled", "timed-out"):
                break
            await asyncio.sleep(0.1)

    assert task.json()["status"] == "completed", task.json()["error"]
    assert_sent_for_real(local_http)
    assert "[secret:canary]" in task.json()["messages"][2]["content"]
    assert leaked(task.text) == []
    events = await read_stream(api, tenant.url(f"/tasks/{task_id}/events"), tenant.headers)
    streamed = "\n".join(event["data"] for event in events)
    assert "tool.run.completed" in {event["event"] for event in events}, events
    assert "[secret:canary]" in streamed
    assert leaked(streamed) == []
    run_ids = [
        json.loads(event["data"])["data"]["run_id"]
        for event in events
        if event["event"] == "tool.run.started"
    ]
    workflows = [started.json()["workflow_id"], *(f"tool-run-{r}" for r in run_ids)]
    assert len(workflows) == 2
    assert leaked(await histories_of(temporal_env, workflows)) == []


async def test_a_secret_an_enrichment_gets_back_is_in_no_row(
    api: httpx.AsyncClient,
    tenant: Tenant,
    secret_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
    session_factory: async_sessionmaker[AsyncSession],
):
    await put_secrets(api, tenant)
    local_http.reset()
    spec = mirror_tool(local_http)
    spec["params"] = [{"name": "name"}]
    tool = await save(api, tenant, spec)
    set_id, (row_id,) = await new_set(
        api,
        tenant,
        [{"name": name} for name in ("name", "got", "got_text", "got_error")],
        [{"name": "Ada"}],
    )
    started = await api.post(
        tenant.url(f"/knowledge/sets/{set_id}/enrichments"),
        json={
            "tool_id": tool["id"],
            "input_mapping": {"name": {"column": "name"}},
            "output_mapping": {"got": "body", "got_text": "url"},
        },
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    job = await wait_for_job(api, tenant, set_id, started.json()["id"])

    assert job["status"] == "succeeded", job["error"]
    assert_sent_for_real(local_http)
    row = (await rows_of(session_factory, set_id))[row_id]
    assert "[secret:canary]" in row["got"] and "[secret:quoted]" in row["got_text"]
    assert leaked(json.dumps(row, ensure_ascii=False)) == []
    assert leaked(await histories_of(temporal_env, [job["workflow_id"]])) == []


async def test_an_error_answer_is_scrubbed_before_it_is_cut_short(
    api: httpx.AsyncClient,
    tenant: Tenant,
    secret_worker: Worker,
    local_http: LocalHttp,
    temporal_env: WorkflowEnvironment,
):
    """A failed request's error quotes the start of the answer: a server that reflects the
    body must not be made to cut a secret there, leaving its start unrecognised."""
    await put_secrets(api, tenant)
    step = {
        "name": "reflect",
        "type": "http",
        "method": "POST",
        "url": local_http.base + "/reflect?status=400",
        "body": "{{ params.pad }}{{ secrets.canary }}",
    }
    tool = await save(
        api, tenant, {"name": "Reflect", "params": [{"name": "pad"}], "steps": [step]}
    )
    body = await run(api, tenant, tool["id"], {"pad": "x" * 290})

    assert body["status"] == "failed"
    assert "HTTP 400" in body["error"]
    history = await histories_of(temporal_env, [body["workflow_id"]])
    for text in (json.dumps(body, ensure_ascii=False), history):
        assert CANARY[:8] not in text


# The scrubber itself


def test_every_form_httpx_sends_a_secret_in_is_recognised():
    for value in (CANARY, QUOTED, "key with spaces/?&=+@:;,!$'()*[]{}|^`<>~%"):
        # Written into a url, `#` starts the fragment, and in a path `?` the query.
        in_query, in_path = value.replace("#", ""), value.replace("#", "").replace("?", "")
        sent = [
            (value, httpx.Request("GET", "https://example.com/", params={"q": value}).url),
            (in_query, httpx.URL("https://example.com/?q=" + in_query)),
            (in_path, httpx.URL("https://example.com/" + in_path)),
        ]
        for secret, url in sent:
            scrubbed = SecretScrubber({"s": secret}).text(str(url))
            assert scrubbed.count("[secret:s]") == 1, (url, scrubbed)


def test_a_secret_inside_a_longer_base64_text_is_recognised_at_any_offset():
    scrubber = SecretScrubber({"canary": CANARY})
    for prefix in ("", "u", "us", "user:", "a much longer user name:"):
        for suffix in ("", "!", "!!", "!!!"):
            raw = (prefix + CANARY + suffix).encode()
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                token = encode(raw).decode()
                assert "[secret:canary]" in scrubber.text(f"Basic {token}"), (prefix, suffix)


def test_a_secret_lower_cased_or_in_a_python_error_message_is_recognised():
    scrubber = SecretScrubber({"quoted": QUOTED, "canary": CANARY})
    assert scrubber.text(f"cannot resolve {CANARY.lower()}.example.com") == (
        "cannot resolve [secret:canary].example.com"
    )
    assert scrubber.text(f"bad value {QUOTED!r}") == "bad value '[secret:quoted]'"
    assert scrubber.text(f"{QUOTED.encode()!r}") == "b'[secret:quoted]'"


@pytest.mark.xdist_group("timing")  # bounds how long it takes
def test_a_large_output_is_scrubbed_quickly():
    scrubber = SecretScrubber({"canary": CANARY, "quoted": QUOTED, "key": "sk-live-0123456789"})
    text = "lorem ipsum dolor sit amet " * 200_000 + CANARY  # 5.4 MB
    rows = [{"id": i, "name": f"row {i}", "note": "lorem ipsum " * 4} for i in range(20_000)]
    started = time.perf_counter()
    assert scrubber.text(text).endswith("[secret:canary]")
    assert scrubber.value({"rows": rows, "last": QUOTED})["last"] == "[secret:quoted]"
    assert time.perf_counter() - started < 2.0
