"""What a provider's failure means for Baton, decided in one place for every provider.

A failure is retryable when trying again later can succeed: 408, 409, 429, any 5xx, a
connection that failed or timed out, a stream cut off midway. Any other 4xx means the request
itself must change. Messages name what to fix and never contain the API key."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from baton.errors import BatonError
from baton.integrations.llm import egress

RETRYABLE_STATUSES = frozenset({408, 409, 429})
_MAX_DETAIL = 500


class ProviderError(BatonError):
    """An LLM provider refused or failed a call. `status` is its HTTP status (None when no
    response arrived); `retry_after` is how long it asked us to wait, in seconds."""

    code = "provider_error"
    status_code = 502

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, details={"provider": provider, "status": status})
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderNotConfigured(ProviderError):
    code = "provider_not_configured"

    def __init__(self, provider: str) -> None:
        setting = f"BATON_{provider.upper()}"
        super().__init__(
            f"{provider} has no API key: set {setting}_API_KEY, or {setting}_BASE_URL for a "
            "server that needs none",
            provider=provider,
            retryable=False,
        )


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def http_error(
    provider: str,
    *,
    status: int,
    headers: Mapping[str, str],
    body: object,
    fallback: str,
    secret: str | None,
) -> ProviderError:
    retryable = is_retryable_status(status)
    detail = redact(_error_detail(body) or fallback, secret)
    return ProviderError(
        f"{provider} answered HTTP {status}{_HINTS.get(status, '')}: {detail}",
        provider=provider,
        status=status,
        retryable=retryable,
        retry_after=retry_after_seconds(headers) if retryable else None,
    )


def connection_failed(
    provider: str, *, base_url: str, cause: BaseException, secret: str | None
) -> ProviderError:
    refused = egress.refusal_in(cause)
    if refused is not None:
        # Refused before connecting: nothing was sent and no server answered. Trying again
        # cannot help until the operator allows the address.
        return ProviderError(
            f"{provider} at {base_url} was not called: {refused.message}",
            provider=provider,
            retryable=False,
        )
    # Client libraries say "Connection error."; the transport's own error says which.
    reason = str(cause)
    if cause.__cause__ is not None and str(cause.__cause__):
        reason = f"{reason} ({cause.__cause__})"
    return ProviderError(
        redact(f"the connection to {provider} at {base_url} failed: {reason}", secret),
        provider=provider,
        retryable=True,
    )


def stream_failed(provider: str, *, detail: str, secret: str | None) -> ProviderError:
    """The provider accepted the call, then reported an error inside the stream (for example
    overloaded): the call as a whole may succeed when tried again."""
    return ProviderError(
        f"{provider} failed while streaming its answer: {redact(detail, secret)}",
        provider=provider,
        retryable=True,
    )


_HINTS = {
    401: " (check the API key)",
    403: " (check the API key's permissions)",
    404: " (check the model name and the base URL)",
}


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The delay a provider asked for: `retry-after-ms` (OpenAI, Anthropic) or `Retry-After` as
    seconds or an HTTP date. None when absent, unreadable or already past."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000 if millis > 0 else None
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds > 0 else None


def redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "[redacted]")
    return text


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _error_detail(body: object) -> str | None:
    # OpenAI: {"error": {"message": ...}}; Anthropic: {"type": "error", "error": {"message": ...}}.
    error: Any = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
    elif isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    elif isinstance(body, str) and body.strip():
        message = body
    else:
        return None
    return message[:_MAX_DETAIL]
