"""Turning Baton's own errors into Temporal failures: input that cannot succeed on retry
fails the run at once, anything else is retried by the activity's policy."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from baton.errors import BatonError, InvalidInput, NotFound


def as_application_error(exc: BatonError) -> ApplicationError:
    """Retried when the error says trying again may help, or when it does not say and is
    not bad input or a missing resource."""
    if exc.retryable is None:
        non_retryable = isinstance(exc, InvalidInput | NotFound)
    else:
        non_retryable = not exc.retryable
    return ApplicationError(exc.message, type=exc.code, non_retryable=non_retryable)
