"""Bad input gets a clear 4xx in the API's JSON error shape: oversized bodies are refused before
they are read whole, malformed JSON, wrong types and unknown fields name what to fix."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from baton.settings import Settings
from tests.support import Tenant, api_client, assert_error, cursor_of

MiB = 1024 * 1024


class CountingUpload:
    """A chunked body of `total` bytes that counts how much the client really sent."""

    def __init__(self, total: int, chunk: int = MiB) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b"x" * self.chunk


@pytest.fixture
async def small_limits_api(
    settings: Settings, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with limits small enough to cross cheaply: 1 KB of JSON, 10 KB of upload."""
    limited = settings.model_copy(update={"max_body_bytes": 1024, "max_upload_bytes": 10_000})
    async with api_client(limited, temporal_env.client) as client:
        yield client


# Size limits


async def test_a_declared_length_over_the_limit_is_refused_with_413(
    api: httpx.AsyncClient, tenant: Tenant
):
    body = b'{"name": "' + b"x" * (3 * MiB) + b'"}'
    response = await api.post(
        tenant.url("/agents"),
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    error = assert_error(response, 413, "payload_too_large")["error"]
    assert str(2 * MiB) in error["message"]


async def test_a_chunked_body_over_the_limit_is_refused_with_413(
    api: httpx.AsyncClient, tenant: Tenant
):
    upload = CountingUpload(total=10 * MiB)
    response = await api.post(
        tenant.url("/agents"),
        content=upload,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    assert upload.sent < upload.total


async def test_a_body_under_the_limit_is_read_and_validated(api: httpx.AsyncClient, tenant: Tenant):
    """1.5 MB passes the size limit and reaches the model, which has its own, smaller, bound."""
    spec = {"name": "Big", "system_prompt": "x" * (3 * MiB // 2)}
    response = await api.post(tenant.url("/agents"), json=spec, headers=tenant.headers)
    error = assert_error(response, 422, "invalid_input")["error"]
    assert error["details"][0]["field"] == "system_prompt"


async def test_knowledge_imports_get_the_larger_upload_limit(
    small_limits_api: httpx.AsyncClient, tenant: Tenant
):
    form = {"file": ("rows.csv", b"a,b\n" + b"1,2\n" * 1000, "text/csv")}
    imports = tenant.url("/knowledge/sets/any/imports")
    # Past the 1 KB JSON limit, yet it reaches the route, which does not know the set.
    response = await small_limits_api.post(imports, files=form, headers=tenant.headers)
    assert_error(response, 404, "not_found")

    text = {"text": "words " * 1000}
    response = await small_limits_api.post(f"{imports}/text", json=text, headers=tenant.headers)
    assert_error(response, 404, "not_found")

    too_big = {"file": ("rows.csv", b"1,2\n" * 30_000, "text/csv")}
    response = await small_limits_api.post(imports, files=too_big, headers=tenant.headers)
    assert_error(response, 413, "payload_too_large")

    response = await small_limits_api.post(
        tenant.url("/agents"), json={"name": "x" * 2000}, headers=tenant.headers
    )
    assert_error(response, 413, "payload_too_large")


async def test_user_group_errors_keep_their_documented_success_flag(
    small_limits_api: httpx.AsyncClient, tenant: Tenant
):
    response = await small_limits_api.post(
        "/api/user", json={"name": "x" * 2000}, headers=tenant.headers
    )
    body = assert_error(response, 413, "payload_too_large")
    assert body["success"] == 0


async def upload_watching_for_an_answer(
    base_url: str, path: str, headers: dict[str, str], upload: CountingUpload
) -> tuple[int, dict[str, Any]]:
    """Sends `upload` over a raw socket while reading, as curl does, so an early answer is seen
    the moment it comes (httpx reads only once its body is sent). Returns status and JSON body."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    reader, writer = await asyncio.open_connection(host, port)
    conn = h11.Connection(our_role=h11.CLIENT)
    fields = [("Host", host), *headers.items()]
    request = h11.Request(method="POST", target=path, headers=fields)
    writer.write(conn.send(request) or b"")

    async def send_body() -> None:
        async for chunk in upload:
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()

    sending = asyncio.create_task(send_body())
    status, body = 0, b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
    finally:
        sending.cancel()
        # The server closed a connection it had unread data on: the client's writes fail.
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    return status, json.loads(body)


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_a_200_mb_upload_to_the_real_server_is_cut_off_early(
    live_api: str, tenant: Tenant, declared: bool
):
    """Over a real socket: the server answers 413 and closes the connection once the limit is
    passed (or at once when the declared length is over it), long before 200 MB are sent:
    it does not read, let alone buffer, the rest."""
    upload = CountingUpload(total=200 * MiB, chunk=64 * 1024)
    headers = {**tenant.headers, "Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(upload.total)
    else:
        headers["Transfer-Encoding"] = "chunked"
    started = time.monotonic()
    async with asyncio.timeout(30):
        status, body = await upload_watching_for_an_answer(
            live_api, tenant.url("/agents"), headers, upload
        )
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert upload.sent < 20 * MiB, f"the client sent {upload.sent // MiB} MB before the 413"
    assert time.monotonic() - started < 10


# Malformed and mistyped bodies


async def test_malformed_json_is_a_400_saying_where_it_breaks(
    api: httpx.AsyncClient, tenant: Tenant
):
    response = await api.post(
        tenant.url("/agents"),
        content=b'{"name": ',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    error = assert_error(response, 400, "invalid_json")["error"]
    assert "not valid JSON" in error["message"]
    assert "character 9" in error["message"]


async def test_a_body_that_is_not_json_is_a_415(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.post(
        tenant.url("/agents"),
        content=b'{"name": "a"}',
        headers={**tenant.headers, "Content-Type": "text/plain"},
    )
    error = assert_error(response, 415, "unsupported_media_type")["error"]
    assert "application/json" in error["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": 5}, "name", "valid string"),
        ({"name": "a", "temperature": "hot"}, "temperature", "valid number"),
        ({"name": "a", "max_iterations": 0}, "max_iterations", "greater than or equal to 1"),
        ({"name": "a", "colour": "blue"}, "colour", "Extra inputs are not permitted"),
        ({"name": "a", "tools": [{"tool_id": "t"}, {"tool_id": "u", "approval": "maybe"}]},
         "tools[1].approval", "'auto', 'required' or 'agent_decides'"),
        ([1, 2], "body", "valid dictionary"),
    ],
)  # fmt: skip
async def test_a_wrong_agent_body_is_a_422_naming_the_field(
    api: httpx.AsyncClient, tenant: Tenant, body: Any, field: str, words: str
):
    response = await api.post(tenant.url("/agents"), json=body, headers=tenant.headers)
    error = assert_error(response, 422, "invalid_input")["error"]
    assert error["details"][0]["field"] == field
    assert f"{field}: " in error["message"]
    assert words in error["message"]


async def test_a_bad_step_in_a_tool_names_its_index_and_field(
    api: httpx.AsyncClient, tenant: Tenant
):
    spec = {
        "name": "Bad",
        "steps": [
            {"name": "a", "type": "template", "template": "x"},
            {"name": "b", "type": "template", "template": "y"},
            {"name": "c", "type": "http", "url": "https://example.com", "method": "FETCH"},
        ],
    }
    response = await api.post(tenant.url("/tools"), json=spec, headers=tenant.headers)
    error = assert_error(response, 422, "invalid_input")["error"]
    assert error["details"][0]["field"] == "steps[2].method"
    assert error["message"].startswith("invalid input: steps[2].method: ")


async def test_an_invalid_value_is_not_echoed_back(api: httpx.AsyncClient, tenant: Tenant):
    """Someone may paste a secret into the wrong field; the error must not repeat it."""
    secret = "sk-live-do-not-echo-123"
    response = await api.post(
        tenant.url("/agents"), json={"name": "a", "temperature": secret}, headers=tenant.headers
    )
    assert_error(response, 422, "invalid_input")
    assert secret not in response.text


async def test_a_bad_query_parameter_is_a_422_naming_it(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.get(tenant.url("/tasks"), params={"limit": "many"}, headers=tenant.headers)
    error = assert_error(response, 422, "invalid_input")["error"]
    assert error["details"][0]["field"] == "query.limit"


# Values no database column stores


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"name": "a", "tools": [{"tool_id": "\\ud800"}]}', "tools[0].tool_id"),
        (b'{"name": "a", "\\udfff": 1}', "\\udfff"),
    ],
)
async def test_text_with_nul_or_a_lone_surrogate_is_a_422_naming_the_field(
    api: httpx.AsyncClient, tenant: Tenant, raw: bytes, field: str
):
    response = await api.post(
        tenant.url("/agents"),
        content=raw,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "invalid_input")["error"]
    assert error["details"][0]["field"] == json.loads(f'"{field}"')
    assert "NUL" in error["message"]


async def test_a_nul_in_a_path_or_query_parameter_is_a_422(api: httpx.AsyncClient, tenant: Tenant):
    response = await api.get(tenant.url("/agents/a%00b"), headers=tenant.headers)
    assert (
        assert_error(response, 422, "invalid_input")["error"]["details"][0]["field"] == "agent_id"
    )
    response = await api.get(
        tenant.url("/tool-runs"), params={"tool_id": "\0"}, headers=tenant.headers
    )
    assert_error(response, 422, "invalid_input")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        cursor_of({"id": "x"}),
        cursor_of(["2030-01-01T00:00:00+00:00"]),
        cursor_of(["2030-01-01T00:00:00", "an-id"]),  # a time without its zone
        cursor_of([1, 2]),
        cursor_of(["2030-01-01T00:00:00+00:00", 2**70]),
    ],
)
async def test_a_cursor_no_list_gave_is_a_422_naming_it(
    api: httpx.AsyncClient, tenant: Tenant, cursor: str
):
    for path in ("/tool-runs", "/tasks", "/agents"):
        response = await api.get(
            tenant.url(path), params={"cursor": cursor}, headers=tenant.headers
        )
        error = assert_error(response, 422, "invalid_input")["error"]
        assert error["details"][0]["field"] == "cursor"


async def test_a_limit_past_a_lists_bound_is_a_422(api: httpx.AsyncClient, tenant: Tenant):
    for path in ("/tool-runs", "/tasks", "/agents"):
        for limit in (0, 201, 2**70):
            response = await api.get(
                tenant.url(path), params={"limit": limit}, headers=tenant.headers
            )
            error = assert_error(response, 422, "invalid_input")["error"]
            assert error["details"][0]["field"] == "query.limit"
