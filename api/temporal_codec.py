"""What the codec server decides: who may read which encrypted payload, and the signed
session that lets the Temporal UI (which cannot send Baton's token) be that reader.

An encrypted payload names its workflow (authenticated with it, see baton/payload_codec.py).
A workflow belongs to the project in its `BatonProject` search attribute, which only Baton
sets when it starts a run; a child run (a tool run inside a task) has none and belongs to the
project of its root workflow. A schedule's start payload names the schedule's workflow id
prefix, `task-schedule-<id>`, which resolves through the schedules table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from datetime import timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.client import Client, WorkflowExecutionDescription
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext
from temporalio.service import RPCError, RPCStatusCode

from baton.db.payload_store import DatabasePayloadStore
from baton.db.tables import AgentSchedule, Project
from baton.domain.accounts import Principal
from baton.errors import BatonError, InvalidInput, ServiceUnavailable
from baton.payload_codec import (
    PayloadDecryptionError,
    PayloadKeys,
    is_encrypted,
    open_payload,
    seal,
    workflow_id_of,
)
from baton.temporal import BATON_PROJECT

SCHEDULE_PREFIX = "task-schedule-"
# Baton's workflow ids: `task-<uuid>`, `tool-run-<uuid>`, `task-schedule-<uuid>-<time>`, ...
WORKFLOW_ID_SHAPE = re.compile(r"[A-Za-z0-9._:+-]{1,200}")
DESCRIBE_TIMEOUT = timedelta(seconds=5)
# Resolved workflows kept in memory: a workflow's project never changes.
MAX_CACHED_WORKFLOWS = 10_000
SESSION_SECONDS = 12 * 3600
# Each distinct workflow may cost a look-up in Temporal; the UI sends one event's payloads.
MAX_WORKFLOWS_PER_REQUEST = 100
REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()


class UndecodablePayload(BatonError):
    """A payload of the caller's own project that does not open."""

    code = "undecodable_payload"
    status_code = 400


class WorkflowProjects:
    """Workflow id -> project id, from Temporal (and the schedules table), remembered."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._known: dict[str, str] = {}

    async def project_of(self, session: AsyncSession, workflow_id: str) -> str | None:
        if workflow_id in self._known:
            return self._known[workflow_id]
        project_id = await self._resolve(session, workflow_id)
        if project_id is not None:
            if len(self._known) >= MAX_CACHED_WORKFLOWS:
                self._known.pop(next(iter(self._known)))
            self._known[workflow_id] = project_id
        return project_id

    async def _resolve(self, session: AsyncSession, workflow_id: str) -> str | None:
        if not WORKFLOW_ID_SHAPE.fullmatch(workflow_id):
            return None  # not an id Baton gives (and not one to send to Temporal)
        described = await self._describe(workflow_id)
        if described is None:
            if workflow_id.startswith(SCHEDULE_PREFIX):
                schedule = await session.get(AgentSchedule, workflow_id[len(SCHEDULE_PREFIX) :])
                return schedule.project_id if schedule is not None else None
            return None
        project_id = described.typed_search_attributes.get(BATON_PROJECT)
        root = described.raw_description.workflow_execution_info.root_execution.workflow_id
        if project_id is None and root and root != workflow_id:
            rooted = await self._describe(root)
            project_id = rooted.typed_search_attributes.get(BATON_PROJECT) if rooted else None
        return project_id

    async def _describe(self, workflow_id: str) -> WorkflowExecutionDescription | None:
        try:
            handle = self._client.get_workflow_handle(workflow_id)
            return await handle.describe(rpc_timeout=DESCRIBE_TIMEOUT)
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return None  # no such workflow (or no id Temporal would accept)
            raise ServiceUnavailable(
                "Temporal did not answer, so no payload can be decoded now"
            ) from exc


async def may_read_project(session: AsyncSession, principal: Principal, project_id: str) -> bool:
    project = await session.get(Project, project_id)
    return (
        project is not None
        and project.org_id == principal.org_id
        and principal.can_reach_project(project_id)
        and not principal.is_user_group
    )


async def decode_for(
    payloads: Sequence[Payload],
    *,
    principal: Principal,
    session: AsyncSession,
    workflows: WorkflowProjects,
    keys: PayloadKeys,
    store: DatabasePayloadStore,
) -> list[Payload]:
    """Opens the payloads of the principal's own projects. Any other encrypted payload comes
    back as it was sent, and is never opened, so whether it is intact is not revealed either.
    An own payload that does not open (altered, or under a key not configured) is refused."""
    readable: dict[str, bool] = {}
    decoded = []
    for index, payload in enumerate(payloads):
        # A large value is in history as a reference to its (encrypted) blob in our database.
        sealed = await stored_payload(payload, store) or payload
        workflow_id = workflow_id_of(sealed) if is_encrypted(sealed) else None
        if workflow_id is None:
            decoded.append(payload)
            continue
        if workflow_id not in readable:
            if len(readable) >= MAX_WORKFLOWS_PER_REQUEST:
                raise InvalidInput(
                    f"send the payloads of at most {MAX_WORKFLOWS_PER_REQUEST} workflows at once"
                )
            project_id = await workflows.project_of(session, workflow_id)
            readable[workflow_id] = project_id is not None and await may_read_project(
                session, principal, project_id
            )
        if not readable[workflow_id]:
            decoded.append(payload)
            continue
        try:
            decoded.append(open_payload(sealed, keys))
        except PayloadDecryptionError as exc:
            raise UndecodablePayload(f"payloads[{index}]: {exc}") from None
    return decoded


async def stored_payload(payload: Payload, store: DatabasePayloadStore) -> Payload | None:
    """The payload an external-storage reference stands for, if it is one of ours and the blob
    is there."""
    if (
        payload.metadata.get("encoding") != b"json/protobuf"
        or payload.metadata.get("messageType") != REFERENCE_TYPE
    ):
        return None
    try:
        reference = json_format.Parse(payload.data, ExternalStorageReference())
    except json_format.ParseError:
        return None
    if reference.driver_name != store.name():
        return None
    claim = StorageDriverClaim(claim_data=dict(reference.claim_data))
    try:
        [stored] = await store.retrieve(StorageDriverRetrieveContext(), [claim])
    except (LookupError, ValueError):
        return None
    return stored


def encode(payloads: Sequence[Payload], keys: PayloadKeys) -> list[Payload]:
    """Encrypts what the UI sends to a workflow (a signal's input): such a payload names no
    workflow, so the worker reads it and the codec server decodes it for nobody."""
    return [seal(payload, keys.current, workflow_id=None) for payload in payloads]


class CodecSessions:
    """A signed, expiring cookie value that stands for one API token (by id, never the token
    itself): the token's revocation or expiry ends the session too."""

    def __init__(self, secret_key: str) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"baton temporal codec session"
        ).derive(secret_key.encode())

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, token_id: str, *, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        message = f"{token_id}.{expires}"
        return f"{message}.{self._mac(message)}"

    def token_id(self, value: str, *, now: float | None = None) -> str | None:
        """The token id of a valid, unexpired session; None for anything else."""
        token_id, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        if not (token_id and expires.isdigit() and mac):
            return None
        if not hmac.compare_digest(mac, self._mac(f"{token_id}.{expires}")):
            return None
        if int(expires) <= (now if now is not None else time.time()):
            return None
        return token_id
