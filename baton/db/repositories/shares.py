"""Share links of agents and tools, the runs visitors started from them, and the one-time
codes that open a user group's dashboard. Tokens and codes are random and kept only hashed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Key, Paged, PageRequest, fetch_page
from baton.db.tables import DashboardCode, ShareLink, ShareRun, utcnow
from baton.errors import Gone, NotFound
from baton.security import hash_token, new_token

SHARE_TOKEN_PREFIX = "bts_"
DASHBOARD_CODE_PREFIX = "btd_"


@dataclass(frozen=True)
class Target:
    """What a link shares: one agent or one tool of a project."""

    project_id: str
    agent_id: str | None = None
    tool_id: str | None = None

    @property
    def noun(self) -> str:
        return "agent" if self.agent_id else "tool"


def is_active(share: ShareLink, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return share.revoked_at is None and (share.expires_at is None or share.expires_at > now)


async def create_share(
    *,
    session: AsyncSession,
    target: Target,
    expires_at: datetime | None,
    user_group_id: str | None = None,
) -> tuple[ShareLink, str]:
    """The link and its token, which is returned this once and never stored."""
    token = new_token(SHARE_TOKEN_PREFIX)
    share = ShareLink(
        project_id=target.project_id,
        agent_id=target.agent_id,
        tool_id=target.tool_id,
        user_group_id=user_group_id,
        token_hash=hash_token(token),
        expires_at=expires_at,
    )
    session.add(share)
    await session.flush()
    return share, token


async def list_shares(
    *, session: AsyncSession, target: Target, page: PageRequest = ALL
) -> Paged[ShareLink]:
    """The target's links, revoked ones too (they say when), newest first."""
    query = select(ShareLink).where(
        ShareLink.project_id == target.project_id,
        ShareLink.agent_id == target.agent_id
        if target.agent_id
        else ShareLink.tool_id == target.tool_id,
    )
    order = (Key(ShareLink.created_at, descending=True), Key(ShareLink.id, descending=True))
    return await fetch_page(session=session, query=query, order=order, page=page)


async def revoke_share(
    *, session: AsyncSession, target: Target, share_id: str
) -> tuple[ShareLink, bool]:
    """Turns a link off at once: the link, and whether this call turned it off (revoking it
    again changes nothing, so the caller audits the first revoke only)."""
    share = await session.get(ShareLink, share_id)
    if (
        share is None
        or share.project_id != target.project_id
        or share.agent_id != target.agent_id
        or share.tool_id != target.tool_id
    ):
        raise NotFound(f"share link {share_id} not found")
    if share.revoked_at is not None:
        return share, False
    share.revoked_at = utcnow()
    await session.flush()
    return share, True


async def open_share(*, session: AsyncSession, token: str) -> ShareLink:
    """The active public link a token opens: 404 for a token that never was one (or one
    shared with a user group, which has no public page), 410 once revoked or expired."""
    share = (
        await session.scalars(select(ShareLink).where(ShareLink.token_hash == hash_token(token)))
    ).one_or_none()
    if share is None or share.user_group_id is not None:
        raise NotFound("this link does not exist")
    if not is_active(share):
        raise Gone("this link was turned off or has expired")
    return share


async def group_shares(
    *, session: AsyncSession, project_id: str, user_group_id: str
) -> list[ShareLink]:
    """The active agent links shared with a user group: the agents its dashboard offers."""
    rows = await session.scalars(
        select(ShareLink)
        .where(
            ShareLink.project_id == project_id,
            ShareLink.user_group_id == user_group_id,
            ShareLink.agent_id.is_not(None),
        )
        .order_by(ShareLink.created_at, ShareLink.id)
    )
    return [share for share in rows if is_active(share)]


async def record_run(*, session: AsyncSession, share_id: str, run_id: str, visitor: str) -> None:
    session.add(ShareRun(run_id=run_id, share_id=share_id, visitor_hash=hash_token(visitor)))
    await session.flush()


async def visitor_runs(
    *, session: AsyncSession, share_id: str, visitor: str, limit: int
) -> list[str]:
    """The ids of the latest tasks or runs this visitor started from the link, newest first."""
    rows = await session.scalars(
        select(ShareRun.run_id)
        .where(ShareRun.share_id == share_id, ShareRun.visitor_hash == hash_token(visitor))
        .order_by(ShareRun.created_at.desc(), ShareRun.run_id)
        .limit(limit)
    )
    return list(rows)


async def require_visitor_run(
    *, session: AsyncSession, share_id: str, visitor: str, run_id: str
) -> None:
    """404 unless this visitor started `run_id` from this link: anything else is not theirs."""
    run = await session.get(ShareRun, run_id)
    if run is None or run.share_id != share_id or run.visitor_hash != hash_token(visitor):
        raise NotFound(f"conversation {run_id} not found")


# The user-group dashboard


async def create_dashboard_code(
    *, session: AsyncSession, user_group_id: str, project_id: str, lifetime: timedelta
) -> tuple[str, datetime]:
    """A new code; codes expired a day ago are deleted on the way (they open nothing)."""
    now = utcnow()
    await session.execute(
        delete(DashboardCode).where(DashboardCode.expires_at < now - timedelta(days=1))
    )
    code = new_token(DASHBOARD_CODE_PREFIX)
    expires_at = now + lifetime
    session.add(
        DashboardCode(
            code_hash=hash_token(code),
            user_group_id=user_group_id,
            project_id=project_id,
            expires_at=expires_at,
        )
    )
    await session.flush()
    return code, expires_at


async def use_dashboard_code(*, session: AsyncSession, code: str) -> DashboardCode:
    """Spends a code: one atomic update, so two requests with the same code never both open
    the dashboard. Unknown, used and expired codes are the same refusal."""
    now = utcnow()
    digest = hash_token(code)
    spent = await session.execute(
        update(DashboardCode)
        .where(
            DashboardCode.code_hash == digest,
            DashboardCode.used_at.is_(None),
            DashboardCode.expires_at > now,
        )
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise Gone("this dashboard link was already used or has expired; ask for a new one")
    found = await session.get(DashboardCode, digest)
    if found is None:  # its group was deleted in between
        raise Gone("this dashboard link was already used or has expired; ask for a new one")
    return found
