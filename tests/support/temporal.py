"""The Temporal binaries the dev extra installs, and workflow histories read as text."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment


def venv_binary(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the project's dev extra")
    return found


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
