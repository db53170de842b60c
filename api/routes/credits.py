"""What the caller's organisation may still spend: its plan, this period's allowances, what
was used and what grants remain (baton/domain/credits.py); the monthly limits its admins set
below the plan, for the organisation and per project; and its usage alerts."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.deps import (
    ActorDep,
    Admin,
    OrgAdmin,
    PlansDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
)
from baton.db.repositories import audit
from baton.db.repositories import credits as credit_repo
from baton.db.tables import Project
from baton.domain.audit import Actor, AuditAction, Target
from baton.domain.credits import AlertsIn, AlertsOut, CreditsOut, MonthlyLimits
from baton.domain.egress import EgressPolicy
from baton.errors import InvalidInput
from baton.integrations import http
from baton.security import SecretBox
from baton.services.credits import wake_paused_tasks

logger = logging.getLogger("baton.credits")

router = APIRouter(prefix="/api/v1", tags=["credits"])
project_router = APIRouter(
    prefix="/api/v1/projects/{project_id}/credits",
    tags=["credits"],
    dependencies=[Depends(get_project)],
)


@router.get("/credits")
async def get_credits(
    request: Request, session: SessionDep, plans: PlansDep, principal: Viewer
) -> CreditsOut:
    """`remaining` is null where the plan sets no limit. A tool run costs one action, whether
    it succeeds or fails; a tool run the organisation cannot pay for, or one past a monthly
    limit, is refused with 402. `limits` are the plan's limits as they apply here (sizes
    under the installation's ceilings); `monthly_limits` the organisation's own, `projects`
    each project's limits and use this period."""
    return await credit_repo.credits_of(
        session=session, plans=plans, org_id=principal.org_id, box=_box(request)
    )


@router.get("/credits/limits")
async def get_limits(session: SessionDep, principal: Viewer) -> MonthlyLimits:
    org = await credit_repo.get_org(session=session, org_id=principal.org_id)
    return credit_repo.limits_of(org)


@router.put("/credits/limits")
async def put_limits(
    body: MonthlyLimits,
    session: SessionDep,
    temporal: TemporalDep,
    principal: OrgAdmin,
    actor: ActorDep,
) -> MonthlyLimits:
    """The organisation's monthly limits, below its plan; null clears one. Reaching one
    refuses tool runs with 402 and pauses tasks, as running out does."""
    org = await credit_repo.get_org(session=session, org_id=principal.org_id)
    await credit_repo.set_limits(session=session, holder=org, limits=body)
    await _audit_limits(session, actor, org.id, None, Target("organization", str(org.id)), body)
    projects = await session.scalars(select(Project.id).where(Project.org_id == org.id))
    await _commit_and_wake(session, temporal, list(projects))
    return credit_repo.limits_of(org)


@project_router.get("/limits")
async def get_project_limits(project: ProjectDep, _: Viewer) -> MonthlyLimits:
    return credit_repo.limits_of(project)


@project_router.put("/limits")
async def put_project_limits(
    body: MonthlyLimits,
    project: ProjectDep,
    session: SessionDep,
    temporal: TemporalDep,
    _: Admin,
    actor: ActorDep,
) -> MonthlyLimits:
    """The project's monthly limits; null clears one. The project's spend is what its
    debits charged this period."""
    await credit_repo.set_limits(session=session, holder=project, limits=body)
    target = Target("project", project.id)
    await _audit_limits(session, actor, project.org_id, project.id, target, body)
    await _commit_and_wake(session, temporal, [project.id])
    return credit_repo.limits_of(project)


@router.get("/credits/alerts")
async def get_alerts(request: Request, session: SessionDep, principal: Viewer) -> AlertsOut:
    org = await credit_repo.get_org(session=session, org_id=principal.org_id)
    return credit_repo.alerts_of(org, _box(request))


@router.put("/credits/alerts")
async def put_alerts(
    body: AlertsIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: OrgAdmin,
    actor: ActorDep,
) -> AlertsOut:
    """Thresholds (percent of the allowance or monthly limit in force, the smaller, per
    currency), each alerted once a period in the audit log (`credits.threshold_reached`) and,
    with a `webhook_url`, POSTed there through the egress guard. The URL is checked now,
    like an http step's; it is never shown again, only its host."""
    if body.webhook_url is not None:
        await _check_webhook(body.webhook_url, EgressPolicy.from_settings(settings))
    org = await credit_repo.get_org(session=session, org_id=principal.org_id)
    box = _box(request)
    await credit_repo.set_alerts(session=session, org=org, alerts=body, box=box)
    await audit.record(
        session=session,
        org_id=org.id,
        project_id=None,
        actor=actor,
        action=AuditAction.credits_alerts_set,
        target=Target("organization", str(org.id)),
        detail={
            "thresholds": ",".join(str(t) for t in body.thresholds) or None,
            "webhook": body.webhook_url is not None,
        },
    )
    return credit_repo.alerts_of(org, box)


async def _check_webhook(url: str, policy: EgressPolicy) -> None:
    if not url.startswith(("http://", "https://")):
        raise InvalidInput("webhook_url: an http:// or https:// URL")
    try:
        await http.check_destination(url, policy=policy)
    except InvalidInput as exc:
        raise type(exc)(f"webhook_url: {exc.message}") from exc


async def _audit_limits(
    session: AsyncSession,
    actor: Actor,
    org_id: int,
    project_id: str | None,
    target: Target,
    limits: MonthlyLimits,
) -> None:
    await audit.record(
        session=session,
        org_id=org_id,
        project_id=project_id,
        actor=actor,
        action=AuditAction.credits_limits_set,
        target=target,
        detail={"actions": limits.actions, "vendor_credits": limits.vendor_credits},
    )


async def _commit_and_wake(session: AsyncSession, temporal: Client, project_ids: list[str]) -> None:
    """A raised or cleared limit may let paused tasks go on: they are told once the change
    is committed (so they read it). Temporal being away is no reason to fail the change:
    each paused task checks again by itself."""
    await session.commit()
    try:
        await wake_paused_tasks(temporal, project_ids)
    except Exception:
        logger.warning("could not tell paused tasks the limits changed", exc_info=True)


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box
