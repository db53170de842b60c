"""Errors the platform raises on purpose. The API maps each to its HTTP status; workflows list
the ones that must fail a run instead of being retried."""

from __future__ import annotations

from typing import Any


class BatonError(Exception):
    """Base of every deliberate error: a stable `code`, a message saying what to fix."""

    code = "error"
    status_code = 400
    # Whether trying again may help, for an error that knows (a service that was down may
    # be up, a refused login stays refused); None leaves it to the kind of error.
    retryable: bool | None = None

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(BatonError):
    code = "invalid_input"
    status_code = 422


class Unauthenticated(BatonError):
    code = "unauthenticated"
    status_code = 401


class OutOfCredits(BatonError):
    """The organisation's plan and grants cannot pay for what was asked."""

    code = "out_of_credits"
    status_code = 402


class PlanLimitReached(BatonError):
    """The organisation's plan allows no more of something (projects, members). 402 like
    OutOfCredits: the caller may do this, the plan is what is missing; 403 stays "this token
    may not", whatever the plan."""

    code = "plan_limit_reached"
    status_code = 402


class PermissionDenied(BatonError):
    code = "permission_denied"
    status_code = 403


class NotFound(BatonError):
    """Also what another tenant's resource answers, so its existence is not revealed."""

    code = "not_found"
    status_code = 404


class Gone(BatonError):
    """Existed, and no longer works: a revoked or expired share link."""

    code = "gone"
    status_code = 410


class Conflict(BatonError):
    code = "conflict"
    status_code = 409


class ServiceUnavailable(BatonError):
    code = "service_unavailable"
    status_code = 503


class ModelNotAvailable(InvalidInput):
    code = "model_not_available"
