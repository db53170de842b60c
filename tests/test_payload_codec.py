"""Temporal holds Baton's payloads encrypted, and the codec server opens them only for the
projects of whoever asks (issue 10: encrypted Temporal payloads)."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from google.protobuf import json_format
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.routes.temporal_codec import SESSION_COOKIE
from baton import temporal
from baton.db.tables import PayloadBlob
from baton.payload_codec import (
    ENCODING,
    KEY_ID,
    WORKFLOW_ID,
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKeys,
)
from baton.settings import Settings
from tests.support import (
    Tenant,
    api_client,
    assert_error,
    auth,
    create_token,
    histories_of,
    payloads_in,
    venv_binary,
    worker_on,
)
from tests.support.factories import task_in
from tests.test_first_task import create_agent
from tests.test_tools import run, save

UI_ORIGIN = "http://localhost:8233"
DECODE = "/api/temporal-codec/decode"
ENCODE = "/api/temporal-codec/encode"


async def run_task(api: httpx.AsyncClient, tenant: Tenant, message: str) -> dict[str, Any]:
    agent = await create_agent(api, tenant)
    started = await api.post(
        tenant.url(f"/agents/{agent['id']}/tasks"),
        json={"message": message},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    task = await task_in(api, tenant, started.json()["id"])
    assert task["status"] == "completed", task
    return task


async def history_payloads(client: Client, workflow_id: str) -> list[Payload]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return payloads_in(json.loads(history.to_json()))


def without_search_attributes(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: without_search_attributes(v) for k, v in value.items() if k != "searchAttributes"
        }
    if isinstance(value, list):
        return [without_search_attributes(v) for v in value]
    return value


def without_marker_bookkeeping(value: Any) -> Any:
    """The history without what the SDK itself writes in clear into its markers: a patch's id,
    and a local activity's id, attempt and times (its result is one of our payloads)."""
    if isinstance(value, dict):
        if "markerRecordedEventAttributes" in value:
            marker = value["markerRecordedEventAttributes"]
            details = {
                k: v for k, v in marker.get("details", {}).items() if k not in SDK_MARKER_DETAILS
            }
            value = {**value, "markerRecordedEventAttributes": {**marker, "details": details}}
        return {k: without_marker_bookkeeping(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_marker_bookkeeping(v) for v in value]
    return value


SDK_MARKER_DETAILS = ("patch-data", "data")


def only_search_attributes(value: Any) -> list[Any]:
    if isinstance(value, dict):
        found = [value["searchAttributes"]] if "searchAttributes" in value else []
        return found + [
            a
            for k, v in value.items()
            if k != "searchAttributes"
            for a in only_search_attributes(v)
        ]
    if isinstance(value, list):
        return [a for v in value for a in only_search_attributes(v)]
    return []


def wire(payloads: list[Payload]) -> dict[str, Any]:
    """The body the Temporal UI sends: protobuf JSON of a Payloads message."""
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


def texts(body: dict[str, Any]) -> str:
    return "\n".join(
        base64.b64decode(p.get("data", "")).decode(errors="replace") for p in body["payloads"]
    )


def base64_forms(text: str) -> list[str]:
    """The text as base64 at each of the three byte alignments it could have inside a longer
    value (the first and last groups, which mix in neighbouring bytes, left out)."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + text.encode()).decode()
        forms.append(encoded[4 if shift else 0 : -4])
    return forms


async def test_payloads_in_history_are_ciphertext_naming_their_key_and_workflow(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    message = f"codec canary {uuid.uuid4()}"
    task = await run_task(api, tenant, message)
    history = await temporal_env.client.get_workflow_handle(task["workflow_id"]).fetch_history()
    raw = history.to_json()
    # Search attributes are not payloads to Temporal's codecs: they stay in clear, and hold
    # ids and statuses only.
    attributes = payloads_in(only_search_attributes(json.loads(raw)))
    values = [json.loads(a.data) for a in attributes]
    # A list is a keyword list: `TemporalChangeVersion`, the patch ids the run took.
    flat = {v for value in values for v in (value if isinstance(value, list) else [value])}
    assert flat >= {tenant.project_id, "agent-task"}
    payloads = payloads_in(without_marker_bookkeeping(without_search_attributes(json.loads(raw))))
    assert len(payloads) >= 5
    current = PayloadKeys(Settings().require_secret_key()).current.key_id
    for payload in payloads:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID].decode() == current
        assert payload.metadata[WORKFLOW_ID].decode() == task["workflow_id"]
        assert message.encode() not in payload.data
    assert message not in raw
    assert not any(form in raw for form in base64_forms(message))
    # The worker's own codec reads them back: the start input carries the message.
    [start] = [
        e.workflow_execution_started_event_attributes.input.payloads[0]
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    ]
    [plain] = await EncryptionCodec(PayloadKeys(Settings().require_secret_key())).decode([start])
    assert message in plain.data.decode()


async def test_a_failure_keeps_its_message_out_of_history_in_clear(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    canary = f"failure canary {uuid.uuid4()}"
    tool = await save(
        api,
        tenant,
        {
            "name": "Fails",
            "steps": [{"name": "boom", "type": "code", "code": f"raise ValueError({canary!r})"}],
        },
    )
    body = await run(api, tenant, tool["id"])
    assert body["status"] == "failed" and canary in body["error"], body
    history = await temporal_env.client.get_workflow_handle(body["workflow_id"]).fetch_history()
    raw = history.to_json()
    assert canary not in raw
    assert not any(form in raw for form in base64_forms(canary))
    assert canary in await histories_of(temporal_env, [body["workflow_id"]])


async def test_the_codec_server_decodes_a_run_for_its_own_organisation_only(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    message = f"decode me {uuid.uuid4()}"
    task = await run_task(api, tenant, message)
    body = wire(await history_payloads(temporal_env.client, task["workflow_id"]))

    mine = await api.post(DECODE, json=body, headers={**tenant.headers, "X-Namespace": "default"})
    assert mine.status_code == 200, mine.text
    assert message in texts(mine.json())
    assert all(
        base64.b64decode(p["metadata"]["encoding"]) != ENCODING for p in mine.json()["payloads"]
    )

    # Another organisation's token gets the payloads back exactly as it sent them.
    theirs = await api.post(DECODE, json=body, headers=other_tenant.headers)
    assert theirs.status_code == 200, theirs.text
    assert theirs.json() == body
    assert message not in texts(theirs.json())

    assert_error(await api.post(DECODE, json=body), 401, "unauthenticated")
    assert_error(await api.post(DECODE, json=body, headers=auth("bt_forged")), 401)
    assert_error(await api.post(ENCODE, json=body), 401, "unauthenticated")


async def test_a_payload_moved_to_another_workflow_or_altered_fails_authentication(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    """An attacker of organisation B who got hold of A's ciphertext relabels it as a payload
    of B's own run: it does not open (the workflow id is bound into the tag), and the answer
    is a 4xx, not plaintext and not a 500."""
    victim = await run_task(api, tenant, f"victim {uuid.uuid4()}")
    own = await run_task(api, other_tenant, "attacker's own run")
    [payload, *_] = await history_payloads(temporal_env.client, victim["workflow_id"])

    relabelled = Payload()
    relabelled.CopyFrom(payload)
    relabelled.metadata[WORKFLOW_ID] = own["workflow_id"].encode()
    moved = await api.post(DECODE, json=wire([relabelled]), headers=other_tenant.headers)
    assert_error(moved, 400, "undecodable_payload")
    assert "failed authentication" in moved.json()["error"]["message"]

    flipped = Payload()
    flipped.CopyFrom(payload)
    flipped.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
    assert_error(await api.post(DECODE, json=wire([flipped]), headers=tenant.headers), 400)

    truncated = Payload()
    truncated.CopyFrom(payload)
    truncated.data = b"short"
    assert_error(await api.post(DECODE, json=wire([truncated]), headers=tenant.headers), 400)

    # A payload that names no workflow Temporal knows is nobody's: it comes back as sent.
    for workflow_id in (b"task-no-such-run", b"\xff" * 2000):
        stray = Payload()
        stray.CopyFrom(payload)
        stray.metadata[WORKFLOW_ID] = workflow_id
        answered = await api.post(DECODE, json=wire([stray]), headers=tenant.headers)
        assert answered.status_code == 200, answered.text
        assert answered.json() == wire([stray])

    not_base64 = {"payloads": [{"metadata": {"encoding": "!!"}, "data": "%%%"}]}
    assert_error(await api.post(DECODE, json=not_base64, headers=tenant.headers), 422)
    assert_error(await api.post(DECODE, json={"payloads": "x"}, headers=tenant.headers), 422)
    other_namespace = {**tenant.headers, "X-Namespace": "someone-else"}
    assert_error(await api.post(DECODE, json=wire([payload]), headers=other_namespace), 422)


async def test_a_child_tool_run_decodes_for_the_project_of_the_run_that_started_it(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    worker: Worker,
    temporal_env: WorkflowEnvironment,
):
    inner = await save(
        api,
        tenant,
        {"name": "Inner", "steps": [{"name": "say", "type": "template", "template": "inner-42"}]},
    )
    outer = await save(
        api,
        tenant,
        {"name": "Outer", "steps": [{"name": "call", "type": "tool", "tool_id": inner["id"]}]},
    )
    body = await run(api, tenant, outer["id"])
    assert body["status"] == "succeeded", body["error"]
    history = await temporal_env.client.get_workflow_handle(body["workflow_id"]).fetch_history()
    [child_id] = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    ]
    child = wire(await history_payloads(temporal_env.client, child_id))

    mine = await api.post(DECODE, json=child, headers=tenant.headers)
    assert mine.status_code == 200, mine.text
    assert "inner-42" in texts(mine.json())
    theirs = await api.post(DECODE, json=child, headers=other_tenant.headers)
    assert theirs.json() == child


async def test_a_large_value_is_stored_encrypted_and_the_codec_server_reads_it_back(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    """Over 64 KB a value goes to the database and history keeps a reference (a claim check):
    the SDK encrypts before it stores, so the stored blob is ciphertext; the codec server
    follows the reference for the run's own project."""
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        data_converter=temporal.data_converter(settings, session_factory),
    )
    big = 200_000
    async with worker_on(client, settings, session_factory), api_client(settings, client) as api:
        tool = await save(
            api,
            tenant,
            {
                "name": "Big",
                "steps": [
                    {"name": "make", "type": "code", "code": f"result = 'big!' * {big}"},
                    {
                        "name": "size",
                        "type": "template",
                        "template": "{{ steps.make.output | length }}",
                    },
                ],
            },
        )
        body = await run(api, tenant, tool["id"])
        assert body["status"] == "succeeded", body["error"]
        payloads = await history_payloads(client, body["workflow_id"])
        references = [
            p
            for p in payloads
            if p.metadata.get("messageType", b"").endswith(b"ExternalStorageReference")
        ]
        assert references, "the big output should have left history"
        async with session_factory() as session:
            claims = [json.loads(r.data)["claimData"]["key"] for r in references]
            blobs = (
                await session.scalars(select(PayloadBlob).where(PayloadBlob.key.in_(claims)))
            ).all()
        assert blobs
        for blob in blobs:
            stored = Payload.FromString(blob.data)
            assert stored.metadata["encoding"] == ENCODING
            assert b"big!big!" not in blob.data

        mine = await api.post(DECODE, json=wire(references), headers=tenant.headers)
        assert mine.status_code == 200, mine.text
        assert "big!" * 1000 in texts(mine.json())
        theirs = await api.post(DECODE, json=wire(references), headers=other_tenant.headers)
        assert theirs.json() == wire(references)


async def test_a_payload_encrypted_under_a_former_secret_key_still_decodes(
    tenant: Tenant,
    settings: Settings,
    temporal_env: WorkflowEnvironment,
    api: httpx.AsyncClient,
    worker: Worker,
):
    task = await run_task(api, tenant, "before the key changed")
    old_secret, new_secret = "the-former-secret-key-0123", "the-current-secret-key-4567"
    old_keys = PayloadKeys(old_secret)
    written = EncryptionCodec(old_keys).with_context(
        WorkflowSerializationContext(namespace="default", workflow_id=task["workflow_id"])
    )
    [sealed] = await written.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"old"')])
    assert sealed.metadata[KEY_ID].decode() == old_keys.current.key_id

    rotated = PayloadKeys(new_secret, [old_secret])
    [opened] = await EncryptionCodec(rotated).decode([sealed])
    assert opened.data == b'"old"'
    [resealed] = await EncryptionCodec(rotated).encode([opened])
    assert resealed.metadata[KEY_ID].decode() == rotated.current.key_id != old_keys.current.key_id
    try:
        await EncryptionCodec(PayloadKeys(new_secret)).decode([sealed])
    except PayloadDecryptionError as exc:
        assert "BATON_PREVIOUS_SECRET_KEYS" in str(exc)
    else:
        raise AssertionError("a payload under an unknown key opened")

    # The codec server of an installation whose secret key changed reads the old payload too.
    after = settings.model_copy(
        update={
            "secret_key": SecretStr(new_secret),
            "previous_secret_keys": [SecretStr(old_secret)],
        }
    )
    async with api_client(after, temporal_env.client) as rotated_api:
        decoded = await rotated_api.post(DECODE, json=wire([sealed]), headers=tenant.headers)
        assert decoded.status_code == 200, decoded.text
        assert texts(decoded.json()) == '"old"'


async def test_the_temporal_ui_origin_may_call_the_codec_with_credentials_and_no_other(
    api: httpx.AsyncClient,
):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    allowed = await api.options(DECODE, headers={"Origin": UI_ORIGIN, **preflight})
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    allowed_headers = allowed.headers["access-control-allow-headers"].lower()
    assert "x-namespace" in allowed_headers and "content-type" in allowed_headers

    stranger = await api.options(DECODE, headers={"Origin": "https://evil.example", **preflight})
    assert stranger.status_code == 400
    assert "access-control-allow-origin" not in stranger.headers

    # An actual request from the UI carries the CORS answer, even when it is refused.
    refused = await api.post(DECODE, json={"payloads": []}, headers={"Origin": UI_ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == UI_ORIGIN
    # The rest of the API is not opened to the UI's origin.
    health = await api.get("/api/health", headers={"Origin": UI_ORIGIN})
    assert "access-control-allow-origin" not in health.headers


async def test_a_browser_signs_in_once_and_its_session_cookie_decodes_until_the_token_goes(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, temporal_env: WorkflowEnvironment
):
    form = await api.get("/api/temporal-codec/sign-in")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert form.headers["x-frame-options"] == "DENY"
    token = await create_token(api, tenant.headers, role="viewer")
    signed_in = await api.post("/api/temporal-codec/sign-in", data={"token": token["token"]})
    assert signed_in.status_code == 200, signed_in.text
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/api/temporal-codec" in cookie
    assert token["token"].lower() not in cookie
    session = signed_in.cookies[SESSION_COOKIE]

    message = f"seen through the cookie {uuid.uuid4()}"
    task = await run_task(api, tenant, message)
    body = wire(await history_payloads(temporal_env.client, task["workflow_id"]))
    api.cookies.clear()
    api.cookies.set(SESSION_COOKIE, session)
    decoded = await api.post(DECODE, json=body)
    assert decoded.status_code == 200, decoded.text
    assert message in texts(decoded.json())

    api.cookies.set(SESSION_COOKIE, session.rsplit(".", 1)[0] + ".AAAA")
    assert_error(await api.post(DECODE, json=body), 401)
    assert_error(
        await api.post(
            "/api/temporal-codec/sign-in",
            data={"token": token["token"]},
            headers={"Origin": "https://evil.example"},
        ),
        403,
    )
    assert_error(await api.post("/api/temporal-codec/sign-in", data={"token": "bt_nope"}), 401)

    revoked = await api.delete(f"/api/v1/tokens/{token['id']}", headers=tenant.headers)
    assert revoked.status_code == 200, revoked.text
    api.cookies.set(SESSION_COOKIE, session)
    assert_error(await api.post(DECODE, json=body), 401)


async def test_what_the_ui_encodes_the_worker_reads_and_the_codec_server_decodes_for_nobody(
    api: httpx.AsyncClient, tenant: Tenant, temporal_env: WorkflowEnvironment
):
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"signal": 1}')
    encoded = await api.post(ENCODE, json=wire([plain]), headers=tenant.headers)
    assert encoded.status_code == 200, encoded.text
    [sealed] = [json_format.ParseDict(p, Payload()) for p in encoded.json()["payloads"]]
    assert sealed.metadata["encoding"] == ENCODING and WORKFLOW_ID not in sealed.metadata
    codec = temporal_env.client.data_converter.payload_codec
    assert codec is not None
    assert await codec.decode([sealed]) == [plain]
    back = await api.post(DECODE, json=encoded.json(), headers=tenant.headers)
    assert back.json() == encoded.json()


async def test_the_temporal_database_holds_no_message_text(
    tmp_path: Path,
    settings: Settings,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    """One dev server on a file of this test's own. A task run by Baton leaves neither its
    message nor the message's base64 in the file; a run by a client without the codec, on the
    same server, does leave its message there (so the search finds what the file holds)."""
    database = tmp_path / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=temporal.SEARCH_ATTRIBUTES,
        data_converter=temporal.data_converter(settings),
        dev_server_database_filename=str(database),
    )
    secret_message = f"nobody reads this {uuid.uuid4()}"
    plain_message = f"everybody reads this {uuid.uuid4()}"
    try:
        async with (
            worker_on(env.client, settings, session_factory),
            api_client(settings, env.client) as api,
        ):
            encrypted = await run_task(api, tenant, secret_message)
        plain_client = await Client.connect(
            env.client.service_client.config.target_host, data_converter=pydantic_data_converter
        )
        plain_settings = settings.model_copy(
            update={"temporal_task_queue": f"plain-{uuid.uuid4()}"}
        )
        async with (
            worker_on(plain_client, plain_settings, session_factory),
            api_client(plain_settings, plain_client) as api,
        ):
            plain = await run_task(api, tenant, plain_message)
    finally:
        await env.shutdown()

    stored = b"".join(path.read_bytes() for path in sorted(tmp_path.glob("temporal.db*")))
    assert encrypted["workflow_id"].encode() in stored
    assert plain["workflow_id"].encode() in stored
    assert plain_message.encode() in stored
    assert secret_message.encode() not in stored
    for form in base64_forms(secret_message):
        assert form.encode() not in stored
