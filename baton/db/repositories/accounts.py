"""Organisations, projects, members, API tokens and user groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import (
    ApiToken,
    Membership,
    Organization,
    Project,
    User,
    UserGroup,
    utcnow,
)
from baton.domain.accounts import Principal, PrincipalKind, Role, UserGroupEnvironment
from baton.errors import Conflict, NotFound, PermissionDenied, Unauthenticated
from baton.security import (
    API_TOKEN_PREFIX,
    USER_GROUP_TOKEN_PREFIX,
    hash_token,
    new_token,
    visible_prefix,
)


@dataclass(frozen=True)
class Bootstrap:
    org: Organization
    project: Project
    token: str


async def count_organizations(*, session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Organization))).scalar_one()


async def bootstrap_organization(
    *, session: AsyncSession, org_name: str, project_name: str
) -> Bootstrap:
    """A new organisation with one project and an owner token for the whole organisation."""
    org = Organization(name=org_name)
    session.add(org)
    await session.flush()
    project = await create_project(session=session, org_id=org.id, name=project_name)
    _, token = await create_api_token(
        session=session, org_id=org.id, project_id=None, name="admin", role=Role.owner
    )
    return Bootstrap(org=org, project=project, token=token)


# Projects


async def create_project(*, session: AsyncSession, org_id: int, name: str) -> Project:
    project = Project(org_id=org_id, name=name)
    session.add(project)
    await session.flush()
    return project


async def list_projects(
    *, session: AsyncSession, principal: Principal, page: PageRequest = ALL
) -> Paged[Project]:
    query = select(Project).where(Project.org_id == principal.org_id)
    if principal.project_id is not None:
        query = query.where(Project.id == principal.project_id)
    order = (Project.created_at, Project.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def get_project(*, session: AsyncSession, principal: Principal, project_id: str) -> Project:
    """The project if the principal may reach it; another tenant's project is simply not found."""
    project = await session.get(Project, project_id)
    if (
        project is None
        or project.org_id != principal.org_id
        or not principal.can_reach_project(project_id)
    ):
        raise NotFound(f"project {project_id} not found")
    return project


# Members


async def add_member(
    *,
    session: AsyncSession,
    org_id: int,
    project_id: str | None,
    email: str,
    name: str,
    role: Role,
) -> tuple[Membership, User]:
    email = email.strip().lower()
    user = (await session.scalars(select(User).where(User.email == email))).one_or_none()
    if user is None:
        user = User(email=email, name=name)
        session.add(user)
        await session.flush()
    existing = (
        await session.scalars(
            select(Membership).where(
                Membership.org_id == org_id,
                Membership.user_id == user.id,
                Membership.project_id.is_(None)
                if project_id is None
                else Membership.project_id == project_id,
            )
        )
    ).one_or_none()
    if existing is not None:
        raise Conflict(f"{email} is already a member here", details={"membership_id": existing.id})
    membership = Membership(org_id=org_id, project_id=project_id, user_id=user.id, role=role.value)
    session.add(membership)
    await session.flush()
    return membership, user


async def list_members(
    *, session: AsyncSession, org_id: int, project_id: str | None, page: PageRequest = ALL
) -> Paged[tuple[Membership, User]]:
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == org_id)
    )
    query = query.where(
        Membership.project_id.is_(None)
        if project_id is None
        else Membership.project_id == project_id
    )
    order = (Membership.created_at, Membership.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def remove_member(
    *,
    session: AsyncSession,
    org_id: int,
    project_id: str | None,
    membership_id: str,
    by: Principal,
) -> Membership:
    """The membership removed."""
    membership = await session.get(Membership, membership_id)
    if membership is None or membership.org_id != org_id or membership.project_id != project_id:
        raise NotFound(f"membership {membership_id} not found")
    if membership.role == Role.owner.value:
        _require_owner(by, "remove an owner's membership")
        if project_id is None:
            owners = await session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(
                    Membership.org_id == org_id,
                    Membership.project_id.is_(None),
                    Membership.role == Role.owner.value,
                )
            )
            if owners == 1:
                raise Conflict(
                    "the last owner of the organisation cannot be removed; make another member "
                    "owner first"
                )
    await session.delete(membership)
    return membership


def _require_owner(principal: Principal, what: str) -> None:
    """Owners answer only to owners: an admin cannot lock them out."""
    if principal.role is not Role.owner:
        raise PermissionDenied(f"only an owner can {what}; this is a {principal.role.value} token")


# API tokens


async def create_api_token(
    *,
    session: AsyncSession,
    org_id: int,
    project_id: str | None,
    name: str,
    role: Role,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Returns the row and the token in clear, which is never stored and never shown again."""
    token = new_token(API_TOKEN_PREFIX)
    row = ApiToken(
        org_id=org_id,
        project_id=project_id,
        name=name,
        role=role.value,
        prefix=visible_prefix(token),
        token_hash=hash_token(token),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row, token


async def list_api_tokens(
    *, session: AsyncSession, principal: Principal, page: PageRequest = ALL
) -> Paged[ApiToken]:
    query = select(ApiToken).where(ApiToken.org_id == principal.org_id)
    if principal.project_id is not None:
        query = query.where(ApiToken.project_id == principal.project_id)
    order = (ApiToken.created_at, ApiToken.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def revoke_api_token(
    *, session: AsyncSession, principal: Principal, token_id: str
) -> tuple[ApiToken, bool]:
    """The token, and whether this call revoked it (False: it already was)."""
    row = await session.get(ApiToken, token_id)
    if (
        row is None
        or row.org_id != principal.org_id
        or (principal.project_id is not None and row.project_id != principal.project_id)
    ):
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is not None:
        return row, False
    if row.role == Role.owner.value:
        _require_owner(principal, "revoke an owner's token")
        if row.project_id is None and await _active_owner_tokens(session, row.org_id) == 1:
            raise Conflict(
                "this is the organisation's last owner token; create another owner token "
                "before revoking it, or nobody could administer the organisation"
            )
    row.revoked_at = utcnow()
    return row, True


async def _active_owner_tokens(session: AsyncSession, org_id: int) -> int:
    now = utcnow()
    count = await session.scalar(
        select(func.count())
        .select_from(ApiToken)
        .where(
            ApiToken.org_id == org_id,
            ApiToken.project_id.is_(None),
            ApiToken.role == Role.owner.value,
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
    )
    return count or 0


async def authenticate(*, session: AsyncSession, token: str) -> Principal:
    """Resolves a presented token to its principal; any failure is the same 401, so a caller
    learns nothing about which tokens exist."""
    digest = hash_token(token)
    if token.startswith(USER_GROUP_TOKEN_PREFIX):
        found = (
            await session.execute(
                select(UserGroup, Organization.plan)
                .join(Organization, Organization.id == UserGroup.org_id)
                .where(UserGroup.token_hash == digest)
            )
        ).one_or_none()
        if found is None:
            raise Unauthenticated("invalid token")
        group, plan = found
        return Principal(
            kind=PrincipalKind.user_group,
            org_id=group.org_id,
            role=Role.viewer,
            user_group_id=group.id,
            plan=plan,
        )
    row = (
        await session.execute(
            select(ApiToken, Organization.plan)
            .join(Organization, Organization.id == ApiToken.org_id)
            .where(ApiToken.token_hash == digest)
        )
    ).one_or_none()
    if row is None:
        raise Unauthenticated("invalid or revoked token")
    api_token, plan = row
    return _api_token_principal(api_token, plan)


async def authenticate_token_id(*, session: AsyncSession, token_id: str) -> Principal:
    """The principal of an API token named by its id, for a signed session that stands for
    the token (the Temporal codec's sign-in): revoked or expired since, it is refused too."""
    row = await session.get(ApiToken, token_id)
    org = None if row is None else await session.get(Organization, row.org_id)
    return _api_token_principal(row, None if org is None else org.plan)


# `last_used_at` is written at most this often per token: not a database write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _is_stale(last_used_at: datetime | None, now: datetime) -> bool:
    if last_used_at is None:
        return True
    if last_used_at.tzinfo is None:  # SQLite hands datetimes back without their zone
        last_used_at = last_used_at.replace(tzinfo=UTC)
    return now - last_used_at >= LAST_USED_RESOLUTION


def _api_token_principal(row: ApiToken | None, plan: str | None) -> Principal:
    now = utcnow()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("invalid or revoked token")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated("token expired")
    if _is_stale(row.last_used_at, now):
        row.last_used_at = now
    return Principal(
        kind=PrincipalKind.api_token,
        org_id=row.org_id,
        role=Role(row.role),
        project_id=row.project_id,
        token_id=row.id,
        plan=plan,
    )


# User groups


async def create_user_group(
    *,
    session: AsyncSession,
    org_id: int,
    name: str,
    provided_id: str,
    environment: UserGroupEnvironment,
) -> tuple[UserGroup, str]:
    token = new_token(USER_GROUP_TOKEN_PREFIX)
    group = UserGroup(
        org_id=org_id,
        name=name,
        provided_id=provided_id,
        environment=environment.value,
        token_hash=hash_token(token),
    )
    session.add(group)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"a user group with provided_id {provided_id!r} already exists in the "
            f"{environment.value} environment",
            details={"provided_id": provided_id, "environment": environment.value},
        ) from exc
    return group, token


async def rotate_user_group_token(
    *, session: AsyncSession, org_id: int, current_token: str
) -> tuple[UserGroup, str]:
    group = (
        await session.scalars(
            select(UserGroup).where(
                UserGroup.token_hash == hash_token(current_token), UserGroup.org_id == org_id
            )
        )
    ).one_or_none()
    if group is None:
        raise NotFound("no user group of this organisation has that current_token")
    token = new_token(USER_GROUP_TOKEN_PREFIX)
    group.token_hash = hash_token(token)
    group.rotated_at = utcnow()
    await session.flush()
    return group, token


async def find_user_group(
    *, session: AsyncSession, org_id: int, provided_id: str, environment: UserGroupEnvironment
) -> UserGroup:
    group = (
        await session.scalars(
            select(UserGroup).where(
                UserGroup.org_id == org_id,
                UserGroup.provided_id == provided_id,
                UserGroup.environment == environment.value,
            )
        )
    ).one_or_none()
    if group is None:
        raise NotFound(f"no user group {provided_id!r} ({environment.value})")
    return group


async def list_user_groups(
    *, session: AsyncSession, org_id: int, page: PageRequest = ALL
) -> Paged[UserGroup]:
    query = select(UserGroup).where(UserGroup.org_id == org_id)
    order = (UserGroup.created_at, UserGroup.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def delete_user_group(*, session: AsyncSession, org_id: int, user_group_id: str) -> UserGroup:
    """The group deleted."""
    group = await session.get(UserGroup, user_group_id)
    if group is None or group.org_id != org_id:
        raise NotFound(f"user group {user_group_id} not found")
    await session.delete(group)
    return group
