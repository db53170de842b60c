"""What an organisation's plan allows it to have: projects and members, counted in the
database when one more is asked for (PlanLimits, baton/domain/credits.py)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.tables import Membership, Organization, Project, User
from baton.domain.credits import PlanBook, PlanLimits
from baton.errors import PlanLimitReached


async def require_room_for_project(*, session: AsyncSession, plans: PlanBook, org_id: int) -> None:
    """Raises PlanLimitReached (402) when the organisation already has the projects its plan
    allows."""
    plan_name, limits = await _locked_limits(session, plans, org_id)
    limit = limits.max_projects
    if limit is None:
        return
    projects = await session.scalar(
        select(func.count()).select_from(Project).where(Project.org_id == org_id)
    )
    if int(projects or 0) >= limit:
        raise _reached("max_projects", limit, plan_name, f"{limit} project(s)")


async def require_room_for_member(
    *, session: AsyncSession, plans: PlanBook, org_id: int, email: str
) -> None:
    """Raises PlanLimitReached (402) when `email` would be one person more than the plan's
    `max_members`. A member of the organisation or of any of its projects counts once; one
    already counted may be given another role without room."""
    plan_name, limits = await _locked_limits(session, plans, org_id)
    limit = limits.max_members
    if limit is None:
        return
    members = select(Membership.user_id).where(Membership.org_id == org_id)
    already = await session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.email == email.strip().lower(), User.id.in_(members))
    )
    if already:
        return
    count = await session.scalar(
        select(func.count(func.distinct(Membership.user_id))).where(Membership.org_id == org_id)
    )
    if int(count or 0) >= limit:
        raise _reached("max_members", limit, plan_name, f"{limit} member(s)")


async def _locked_limits(
    session: AsyncSession, plans: PlanBook, org_id: int
) -> tuple[str, PlanLimits]:
    """The organisation's plan and its limits, read with the organisation's row locked until
    the transaction ends (PostgreSQL; SQLite has one writer at a time anyway), so two requests
    on two replicas cannot both take the last place."""
    chosen = await session.scalar(
        select(Organization.plan).where(Organization.id == org_id).with_for_update()
    )
    return plans.plan_name(chosen), plans.limits(chosen)


def _reached(name: str, limit: int, plan: str, what: str) -> PlanLimitReached:
    return PlanLimitReached(
        f"the organisation's plan {plan} allows {what} ({name}={limit}); choose a larger plan "
        "or remove one first",
        details={"limit": name, name: limit, "plan": plan},
    )
