"""Small helpers shared by tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
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


async def create_token(
    api: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await api.post("/api/v1/tokens", json={"name": "t", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def histories_of(temporal_env: WorkflowEnvironment, workflow_ids: list[str]) -> str:
    """The histories as JSON followed by every payload decoded: payloads are base64 in the
    JSON, so a plain search of it would never find anything."""
    client = temporal_env.client
    texts = []
    for workflow_id in workflow_ids:
        history = (await client.get_workflow_handle(workflow_id).fetch_history()).to_json()
        texts += [history, *_payloads(json.loads(history))]
    return "\n".join(texts)


def _payloads(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) >= {"metadata", "data"} and isinstance(value["data"], str):
            return [base64.b64decode(value["data"]).decode(errors="replace")]
        return [text for item in value.values() for text in _payloads(item)]
    if isinstance(value, list):
        return [text for item in value for text in _payloads(item)]
    return []
