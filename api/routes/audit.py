"""The organisation's audit log, for its admins and owners: every administrative act, newest
first. Read only: nothing in Baton changes or removes an entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import OrgAdmin, PageDep, SessionDep
from api.schemas.audit import AuditEntryPublic
from api.schemas.paging import Page
from baton.db.repositories import audit
from baton.domain.audit import AuditAction
from baton.errors import InvalidInput

router = APIRouter(prefix="/api/v1", tags=["audit"])


def audit_filter(
    action: Annotated[
        AuditAction | None, Query(description="Only this action, e.g. token.created")
    ] = None,
    project_id: Annotated[
        str | None, Query(max_length=36, description="Only the acts on this project")
    ] = None,
    since: Annotated[datetime | None, Query(description="From this time on (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (exclusive)")] = None,
) -> audit.AuditFilter:
    for field, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(
                f"{field} needs a time zone, for example 2030-01-01T00:00:00Z",
                details=[{"field": field, "message": "no time zone"}],
            )
    if since is not None and until is not None and since >= until:
        raise InvalidInput(
            "since must be before until", details=[{"field": "since", "message": "after until"}]
        )
    return audit.AuditFilter(action=action, project_id=project_id, since=since, until=until)


@router.get("/audit")
async def list_audit_entries(
    session: SessionDep,
    principal: OrgAdmin,
    page: PageDep,
    where: Annotated[audit.AuditFilter, Depends(audit_filter)],
) -> Page[AuditEntryPublic]:
    """Needs an organisation token (not a project's) with the admin or owner role."""
    rows = await audit.list_entries(
        session=session, org_id=principal.org_id, where=where, page=page
    )
    return Page[AuditEntryPublic].of(rows, AuditEntryPublic.model_validate)
