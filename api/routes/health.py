"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import SessionDep, TemporalDep

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
async def health(session: SessionDep, temporal: TemporalDep) -> JSONResponse:
    """`database` must be up for a 200; `temporal` is reported (tasks queue in Temporal's
    absence only in the sense that starting them fails with 503)."""
    database = "ok"
    try:
        await session.execute(text("SELECT 1"))
    except Exception:
        database = "unavailable"
    try:
        async with asyncio.timeout(2):
            temporal_ok = await temporal.service_client.check_health()
    except Exception:
        temporal_ok = False
    body = {
        "status": "ok" if database == "ok" else "degraded",
        "database": database,
        "temporal": "ok" if temporal_ok else "unavailable",
    }
    return JSONResponse(body, status_code=200 if database == "ok" else 503)
