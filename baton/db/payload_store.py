"""Large Temporal payloads kept in our own database: a step's big output or a long
transcript goes to `payload_blobs`, and history holds only a small reference to it. Both the
worker and the API use it, so either side can read what the other stored."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

from baton.db.repositories import payload_blobs as blob_repo

# Payloads from this size on leave history (Temporal warns at 256 KB and fails at 2 MB).
PAYLOAD_SIZE_THRESHOLD = 64 * 1024


class DatabasePayloadStore(StorageDriver):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    def name(self) -> str:
        return "baton-db"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        # The SDK names the workflow whose history will hold the claim (an activity's
        # result belongs to its workflow, a child's result to its parent): the blob lives
        # as long as that history does.
        target = context.target
        workflow_id = target.id if isinstance(target, StorageDriverWorkflowInfo) else None
        blobs = [_blob(payload.SerializeToString(), workflow_id) for payload in payloads]
        async with self._sessions.begin() as session:
            await blob_repo.put_blobs(session=session, blobs=blobs)
        return [StorageDriverClaim(claim_data={"key": blob.key}) for blob in blobs]

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        keys = [claim.claim_data["key"] for claim in claims]
        async with self._sessions() as session:
            found = await blob_repo.get_blobs(session=session, keys=keys)
        missing = [key for key in keys if key not in found]
        if missing:
            raise LookupError(f"stored payloads missing from the database: {missing}")
        return [Payload.FromString(found[key]) for key in keys]


def _blob(data: bytes, workflow_id: str | None) -> blob_repo.NewBlob:
    # Keyed by owner and bytes: two workflows storing the same value each own a copy, so one
    # closing never takes the other's away.
    digest = hashlib.sha256()
    if workflow_id is not None:
        digest.update(workflow_id.encode() + b"\0")
    digest.update(data)
    return blob_repo.NewBlob(key=digest.hexdigest(), data=data, workflow_id=workflow_id)
