"""Small helpers shared by tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a JSON error of the documented shape with the expected status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return body


def cursor_of(values: Any) -> str:
    """A cursor as a list's `next_cursor` spells one (base64 JSON), holding any values."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


async def items_of(api: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[Any]:
    """Every item of a list endpoint, page after page."""
    items: list[Any] = []
    cursor = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        response = await api.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def create_token(
    api: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await api.post("/api/v1/tokens", json={"name": "t", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def histories_of(temporal_env: WorkflowEnvironment, workflow_ids: list[str]) -> str:
    """The histories as JSON followed by every payload decoded: payloads are encrypted and
    base64 in the JSON, so a plain search of it would never find anything."""
    client = temporal_env.client
    texts = []
    for workflow_id in workflow_ids:
        history = (await client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        texts.append(history)
        for payload in payloads_in(json.loads(history)):
            texts.append((await decoded(client, payload)).data.decode(errors="replace"))
    return "\n".join(texts)


async def decoded(client: Client, payload: Payload) -> Payload:
    """A payload as it was before the client's codec encrypted it."""
    codec = client.data_converter.payload_codec
    assert codec is not None, "Baton's clients encrypt their payloads"
    [plain] = await codec.decode([payload])
    return plain


def payloads_in(value: Any) -> list[Payload]:
    """Every payload in a history (or any protobuf JSON), as sent: encrypted."""
    if isinstance(value, dict):
        if set(value) >= {"metadata", "data"} and isinstance(value["data"], str):
            return [json_format.ParseDict(value, Payload(), ignore_unknown_fields=True)]
        return [payload for item in value.values() for payload in payloads_in(item)]
    if isinstance(value, list):
        return [payload for item in value for payload in payloads_in(item)]
    return []
