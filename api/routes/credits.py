"""What the caller's organisation may still spend: its plan, this period's allowances, what
was used and what grants remain (baton/domain/credits.py)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PlansDep, SessionDep, Viewer
from baton.db.repositories import credits as credit_repo
from baton.domain.credits import CreditsOut

router = APIRouter(prefix="/api/v1", tags=["credits"])


@router.get("/credits")
async def get_credits(session: SessionDep, plans: PlansDep, principal: Viewer) -> CreditsOut:
    """`remaining` is null where the plan sets no limit. A tool run costs one action, whether
    it succeeds or fails; a tool run the organisation cannot pay for is refused with 402.
    `limits` are the plan's limits as they apply here (sizes under the installation's
    ceilings)."""
    return await credit_repo.credits_of(session=session, plans=plans, org_id=principal.org_id)
