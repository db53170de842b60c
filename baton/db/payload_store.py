"""Large Temporal payloads kept in our own database: a step's big output or a long
transcript goes to `payload_blobs`, and history holds only a small reference to it. Both the
worker and the API use it, so either side can read what the other stored."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

from baton.db.idempotent import insert_once
from baton.db.tables import PayloadBlob, utcnow

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
        rows = []
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            key = hashlib.sha256(data).hexdigest()
            rows.append({"key": key, "data": data, "created_at": utcnow()})
            claims.append(StorageDriverClaim(claim_data={"key": key}))
        async with self._sessions.begin() as session:
            await insert_once(session, PayloadBlob, rows, key=["key"])
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        keys = [claim.claim_data["key"] for claim in claims]
        async with self._sessions() as session:
            found = {
                row.key: row.data
                for row in await session.scalars(
                    select(PayloadBlob).where(PayloadBlob.key.in_(set(keys)))
                )
            }
        missing = [key for key in keys if key not in found]
        if missing:
            raise LookupError(f"stored payloads missing from the database: {missing}")
        return [Payload.FromString(found[key]) for key in keys]
