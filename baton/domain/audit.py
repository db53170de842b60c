"""The audit log's vocabulary: who acted (`Actor`), what they did (`AuditAction`, a stable
dotted name clients may filter on) and on what (`Target`). An entry's detail is a few plain
facts (names, roles, kinds), never a secret's value: a secret is named, not quoted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from baton.domain.accounts import Principal, PrincipalKind


class AuditAction(StrEnum):
    token_created = "token.created"
    token_revoked = "token.revoked"
    member_added = "member.added"
    member_removed = "member.removed"
    # No route changes a member's role yet; the one that does records this.
    member_role_changed = "member.role_changed"
    integration_created = "integration.created"
    integration_updated = "integration.updated"
    integration_deleted = "integration.deleted"
    secret_written = "secret.written"
    secret_deleted = "secret.deleted"
    plan_set = "plan.set"
    credits_granted = "credits.granted"
    credits_limits_set = "credits.limits_set"
    credits_alerts_set = "credits.alerts_set"
    # Not an act of a person: a debit made the organisation's use cross an alert threshold.
    credits_threshold_reached = "credits.threshold_reached"
    # Nor this: a usage alert's webhook failed every attempt.
    credits_alert_failed = "credits.alert_failed"
    user_group_created = "user_group.created"
    user_group_rotated = "user_group.rotated"
    user_group_deleted = "user_group.deleted"
    # An agent, tool or workforce made from another project's (its detail names the source)
    # or from an imported document.
    definition_cloned = "definition.cloned"
    definition_imported = "definition.imported"
    # A share link of an agent or a tool created, or revoked.
    sharing_enabled = "sharing.enabled"
    sharing_disabled = "sharing.disabled"


# An entry's detail: a few named scalars (names, roles, kinds, amounts).
Detail = Mapping[str, str | int | float | bool | None]


class ActorKind(StrEnum):
    api_token = "api_token"
    user_group = "user_group"
    # Whoever runs the `baton` command on the server (plans, grants).
    operator = "operator"
    # Baton itself, for what follows from use rather than from anyone's act (usage alerts).
    system = "system"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted and from where: a token's id (or none, for the operator) and the client's
    address as the API saw it (behind a proxy, the proxy's)."""

    kind: ActorKind
    id: str | None = None
    client: str | None = None

    @classmethod
    def of(cls, principal: Principal, *, client: str | None) -> Actor:
        if principal.kind is PrincipalKind.user_group:
            return cls(ActorKind.user_group, principal.user_group_id, client)
        return cls(ActorKind.api_token, principal.token_id, client)


OPERATOR = Actor(ActorKind.operator)
SYSTEM = Actor(ActorKind.system)


@dataclass(frozen=True, slots=True)
class Target:
    type: str
    id: str
