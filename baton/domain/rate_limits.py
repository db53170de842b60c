"""Rate limits: a plan's `requests_per_minute` is counted per API token in fixed windows of
one calendar minute (UTC). Every answer to a limited token says where it stands, in the IETF
draft's headers (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset); a refused request
also gets Retry-After."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from baton.errors import BatonError

WINDOW_SECONDS = 60


class RateLimited(BatonError):
    code = "rate_limited"
    status_code = 429


def window_of(now: datetime) -> tuple[int, int]:
    """The minute `now` falls in (minutes since the epoch) and the whole seconds until the
    next one begins (1 to 60)."""
    seconds = now.timestamp()
    minute = math.floor(seconds / WINDOW_SECONDS)
    reset = math.ceil((minute + 1) * WINDOW_SECONDS - seconds)
    return minute, max(1, reset)


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """Where one token stands in the current window, after counting this request."""

    limit: int
    used: int
    reset_seconds: int

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> list[tuple[bytes, bytes]]:
        values = [
            ("RateLimit-Limit", self.limit),
            ("RateLimit-Remaining", self.remaining),
            ("RateLimit-Reset", self.reset_seconds),
        ]
        if self.exceeded:
            values.append(("Retry-After", self.reset_seconds))
        return [(name.lower().encode(), str(value).encode()) for name, value in values]

    def refusal(self, plan: str) -> RateLimited:
        return RateLimited(
            f"too many requests: this token may make {self.limit} a minute on plan {plan}; "
            f"try again in {self.reset_seconds} s",
            details={
                "limit": "requests_per_minute",
                "requests_per_minute": self.limit,
                "retry_after": self.reset_seconds,
            },
        )
