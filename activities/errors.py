"""Turning Baton's own errors into Temporal failures: input that cannot succeed on retry
fails the run at once, anything else is retried by the activity's policy."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from baton.errors import BatonError, InvalidInput, NotFound


def as_application_error(exc: BatonError) -> ApplicationError:
    non_retryable = isinstance(exc, InvalidInput | NotFound)
    return ApplicationError(exc.message, type=exc.code, non_retryable=non_retryable)
