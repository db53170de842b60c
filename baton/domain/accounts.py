"""Organisations, projects, members, tokens and user groups: the words, not the storage."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    editor = "editor"
    admin = "admin"
    owner = "owner"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {Role.viewer: 0, Role.editor: 1, Role.admin: 2, Role.owner: 3}


class UserGroupEnvironment(StrEnum):
    customer = "Customer"
    testing = "Testing"


class PrincipalKind(StrEnum):
    api_token = "api_token"
    user_group = "user_group"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API token (scoped to an organisation or one of its projects, with a
    role) or a user group's token (sees only its own tasks)."""

    kind: PrincipalKind
    org_id: int
    role: Role
    project_id: str | None = None
    token_id: str | None = None
    user_group_id: str | None = None
    # The organisation's plan, read with the token so a rate limit costs no query of its own
    # (None: the installation's default plan).
    plan: str | None = None

    @property
    def rate_key(self) -> str:
        """What its requests are counted under: the API token, or the user group's token."""
        return self.token_id or f"user-group:{self.user_group_id}"

    @property
    def is_user_group(self) -> bool:
        return self.kind is PrincipalKind.user_group

    def can_reach_project(self, project_id: str) -> bool:
        return self.project_id is None or self.project_id == project_id
