"""Checking that an integration works, as `POST .../integrations/{id}/test` does: an LLM kind
lists its endpoint's models, an MCP server is connected to, initialised and asked for its
tools, a Slack app's bot token is checked with `auth.test`, an SMTP server is connected to,
upgraded with STARTTLS and logged in to as sending would. The check goes where the
integration's calls go (its base URL or url, through the egress guard; a stdio server is
started here), with the stored key, and says what failed in words that never hold the key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pydantic import SecretStr

from baton.db.repositories import integrations as integration_repo
from baton.db.tables import Integration
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import MODEL_KINDS, IntegrationKind
from baton.errors import BatonError
from baton.integrations import llm, mcp, slack, smtp
from baton.integrations.llm.errors import redact
from baton.security import SecretBox

CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class IntegrationCheck:
    ok: bool
    error: str | None = None
    models: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)


async def check_integration(
    *,
    row: Integration,
    box: SecretBox,
    egress: EgressPolicy,
    stdio_enabled: bool,
    timeout: float = CHECK_TIMEOUT_S,
) -> IntegrationCheck:
    key: str | None = None
    try:
        async with asyncio.timeout(timeout):
            if row.kind == IntegrationKind.mcp:
                server = integration_repo.reveal_mcp_server(
                    box=box, row=row, egress=egress, stdio_enabled=stdio_enabled
                )
                key = _value(server.api_key)
                tools = await mcp.list_tools(server, timeout=timeout)
                return IntegrationCheck(ok=True, tools=[tool.name for tool in tools])
            if row.kind == IntegrationKind.slack:
                app = integration_repo.reveal_slack_app(box=box, row=row, egress=egress)
                key = app.bot_token.get_secret_value()
                await slack.auth_test(app)
                return IntegrationCheck(ok=True)
            if row.kind == IntegrationKind.smtp:
                mail_server = integration_repo.reveal_smtp_server(box=box, row=row, egress=egress)
                key = _value(mail_server.password)
                await smtp.check(mail_server, timeout=timeout)
                return IntegrationCheck(ok=True)
            if row.kind in MODEL_KINDS:
                config = integration_repo.reveal(box=box, row=row)
                config = config.model_copy(update={"egress": egress})
                key = _value(config.api_key)
                models = await llm.MODEL_LISTS[row.kind](config)
                return IntegrationCheck(ok=True, models=models)
    except TimeoutError:
        return IntegrationCheck(ok=False, error=f"no answer within {timeout:g}s")
    except BatonError as exc:
        return IntegrationCheck(ok=False, error=redact(exc.message, key))
    return IntegrationCheck(ok=False, error=f"integrations of kind {row.kind} cannot be tested")


def _value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
