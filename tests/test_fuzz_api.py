"""The API's own OpenAPI schema, fuzzed with schemathesis: valid and invalid requests to every
operation, authenticated as a real tenant, never get a 5xx, and every error is in the JSON
error shape.

schemathesis calls the API with blocking HTTP requests, so the server runs in a thread with its
own event loop (and its own Temporal client) rather than on the tests' loop, which is idle
while a synchronous test runs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from baton.settings import Settings
from tests.support import Tenant

# Examples per operation: enough to cover missing, mistyped and out-of-range values of each
# field while the whole run stays around a minute on two cores.
EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def threaded_api(settings: Settings, temporal_env: WorkflowEnvironment) -> Iterator[str]:
    """The real app behind uvicorn in a thread of its own; its Temporal client connects by
    address, as a deployed API does."""
    target = temporal_env.client.service_client.config.target_host
    app = create_app(settings.model_copy(update={"temporal_address": target}))
    config = uvicorn.Config(app, log_config=None, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# The email hook takes a raw message (message/rfc822): fuzzed bytes, sent as they are.
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")

# The schema does not depend on settings; building the app connects to nothing.
schema = schemathesis.openapi.from_dict(create_app().openapi())


# uvicorn's own answer to bytes that are not an HTTP request (uvicorn/protocols/http/h11_impl.py).
UVICORN_UNPARSEABLE = "Invalid HTTP request received."


def errors_have_the_json_shape(ctx: Any, response: schemathesis.Response, case: Any) -> None:
    """Every 4xx and 5xx answers `{"error": {"code", "message", "details"}}`. Except one the
    app never sees: a request uvicorn cannot parse as HTTP at all (h11 refuses its request line
    or headers) is answered by uvicorn itself, 400 `Invalid HTTP request received.` as text."""
    if response.status_code < 400:
        return
    if response.status_code == 400 and response.text == UVICORN_UNPARSEABLE:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{response.status_code} {response.headers.get('content-type')}: not JSON: "
            f"{response.text[:300]!r}"
        ) from None
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), response.text
    assert set(body["error"]) == {"code", "message", "details"}, response.text
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], response.text


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_api_fail_or_answer_outside_the_error_shape(
    case: schemathesis.Case, threaded_api: str, tenant: Tenant
) -> None:
    # Inside the tenant's own project, so requests reach the routes rather than stopping at 404.
    if "project_id" in (case.path_parameters or {}):
        case.path_parameters["project_id"] = tenant.project_id
    case.call_and_validate(
        base_url=threaded_api,
        headers=tenant.headers,
        checks=[not_a_server_error, errors_have_the_json_shape],
        timeout=30,
    )
