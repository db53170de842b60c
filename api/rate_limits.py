"""The plans' rate limits at the API's door (baton/domain/rate_limits.py): every request with
a token is counted against its organisation's `requests_per_minute`, in the database, so API
replicas share one count. A token on a plan without a limit costs no write at all.

The count is its own short transaction, committed before the route runs: a refused request
still counts, and a slow route holds no lock on the window."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.db.repositories import rate_limits as rate_repo
from baton.db.tables import utcnow
from baton.domain.accounts import Principal
from baton.domain.credits import PlanBook
from baton.domain.rate_limits import RateLimitState, window_of

# Where a request's state is kept for RateLimitHeaders (the ASGI scope's `state`).
STATE_KEY = "rate_limit"


async def count_request(
    request: Request, principal: Principal, *, holding: AsyncSession | None = None
) -> None:
    """Counts the request against the principal's plan; RateLimited (429) once past it.
    `holding` (the request's session, if one is open) gives its connection back first: a
    request holding one while it waits for another would, with enough of them at once,
    starve the pool."""
    plans: PlanBook = request.app.state.plans
    limit = plans.plan(principal.plan).requests_per_minute
    if limit is None:
        return
    if holding is not None:
        await holding.commit()
    minute, reset_seconds = window_of(utcnow())
    async with request.app.state.session_factory.begin() as session:
        used = await rate_repo.count_request(
            session=session, token_key=principal.rate_key, minute=minute
        )
        if used == 1:  # the first request of a new minute clears the minutes before
            await rate_repo.forget_before(session=session, minute=minute)
    state = RateLimitState(limit=limit, used=used, reset_seconds=reset_seconds)
    request.scope.setdefault("state", {})[STATE_KEY] = state
    if state.exceeded:
        raise state.refusal(plans.plan_name(principal.plan))


class RateLimitHeaders:
    """Adds the RateLimit headers (and Retry-After when refused) to every answer to a counted
    request, errors included. A pure ASGI middleware: it works for streaming responses too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state", {}).get(STATE_KEY)
                if isinstance(state, RateLimitState):
                    headers = [*message.get("headers", []), *state.headers()]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
