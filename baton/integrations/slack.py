"""Slack's Web API, as a Slack integration uses it: `auth.test` (the connection test) and
`chat.postMessage` (the `slack_post` step and answers in a thread), and the check of the
signature Slack puts on the events it sends.

Calls go through the egress guard (`http.fetch`), like an http step's, to the integration's
base URL, and follow no redirect: the bot token is sent only to the address that was
checked. (slack-sdk's AsyncWebClient would connect with aiohttp, outside the guard; its
`SignatureVerifier` is used for events.) Slack answers HTTP 200 with `{"ok": false, "error":
"channel_not_found"}` for most failures: that error is what `SlackError` names."""

from __future__ import annotations

import time
from typing import Any

from slack_sdk.signature import SignatureVerifier

from baton.domain.integrations import SlackApp
from baton.errors import BatonError
from baton.integrations import http

CALL_TIMEOUT_S = 20.0
# Slack's own rule: a request signed longer ago than this may be a replay.
MAX_EVENT_AGE_S = 5 * 60
_MAX_RESPONSE_BYTES = 1_000_000


class SlackError(BatonError):
    """Slack refused the call (`ok: false`): retrying the same call gets the same answer,
    except when Slack says it is rate limited or failing (`retryable`)."""

    code = "slack_error"
    status_code = 502

    def __init__(self, message: str, *, error: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.retryable = retryable


_RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "service_unavailable"})


async def call(app: SlackApp, method: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One Web API method with the bot token; Slack's answer when `ok`, else SlackError."""
    url = f"{app.base_url.rstrip('/')}/{method}"
    try:
        result = await http.fetch(
            "POST",
            url,
            policy=app.egress,
            headers={"Authorization": f"Bearer {app.bot_token.get_secret_value()}"},
            json=arguments,
            timeout=CALL_TIMEOUT_S,
            max_response_bytes=_MAX_RESPONSE_BYTES,
            max_redirects=0,
        )
    except http.HttpStepError as exc:
        raise SlackError(
            f"Slack ({app.name}) at {app.base_url} was not reached: {exc.message}",
            error="unreachable",
            retryable=exc.retryable,
        ) from exc
    try:
        answer = result.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise SlackError(
            f"Slack ({app.name}) answered {method} with HTTP {result.status}, not Slack's JSON",
            error="not_json",
            retryable=result.status >= 500 or result.status == 429,
        )
    if not answer.get("ok"):
        error = str(answer.get("error") or f"http_{result.status}")
        raise SlackError(
            f"Slack ({app.name}) refused {method}: {error}",
            error=error,
            retryable=error in _RETRYABLE_ERRORS or result.status == 429,
        )
    return answer


async def auth_test(app: SlackApp) -> dict[str, Any]:
    """Who the token is: `{team, user, bot_id, ...}`."""
    return await call(app, "auth.test", {})


async def post_message(
    app: SlackApp, *, channel: str, text: str, thread_ts: str | None = None
) -> dict[str, str]:
    """Posts as the bot; `{channel, ts}` of the message Slack made."""
    arguments: dict[str, Any] = {"channel": channel, "text": text}
    if thread_ts:
        arguments["thread_ts"] = thread_ts
    answer = await call(app, "chat.postMessage", arguments)
    return {"channel": str(answer.get("channel", channel)), "ts": str(answer.get("ts", ""))}


def signed_by_slack(
    app: SlackApp, *, body: bytes, timestamp: str | None, signature: str | None
) -> str | None:
    """None when the request carries Slack's v0 signature of this body, made with the app's
    signing secret less than five minutes ago; else why not."""
    if not timestamp or not signature:
        return "the X-Slack-Request-Timestamp and X-Slack-Signature headers are required"
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number of seconds"
    if age > MAX_EVENT_AGE_S:
        return "the request was signed more than five minutes ago"
    verifier = SignatureVerifier(app.signing_secret.get_secret_value())
    try:
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except UnicodeDecodeError:
        valid = False
    if not valid:
        return "the signature does not match this body and the app's signing secret"
    return None
