"""Calls to the tools of MCP servers: the `mcp` step of a tool run. The integration is read and
its key decrypted here, at call time, from the name the step holds; the server's failures
are named, and those that cannot improve on retry (a tool's `isError`, a refused address, a
missing command) fail the step at once."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.heartbeats import with_heartbeats
from activities.steps import render_value
from baton.db.repositories import integrations as integration_repo
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import McpServer
from baton.domain.tool_runs import StepCall, StepOutcome
from baton.domain.tools import McpStep
from baton.errors import BatonError, NotFound
from baton.integrations import mcp
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.settings import Settings

# Of a step's timeout, the share the call itself may take: the rest is for the activity to
# report why it failed before Temporal times it out.
_CALL_SHARE = 0.9


class McpActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._sessions = session_factory
        self._box = SecretBox.from_settings(settings)
        self._egress = EgressPolicy.from_settings(settings)

    @activity.defn(name="baton.step.mcp")
    async def step(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, McpStep)
        arguments = render_value(step.arguments, call.context)
        server = await self._server(call.project_id, step.integration)
        scrubber = SecretScrubber(
            {"api_key": server.api_key.get_secret_value()} if server.api_key else {}
        )
        try:
            output = await with_heartbeats(self._call(server, step, arguments))
        except ApplicationError as exc:
            raise scrubber.error(exc) from None
        return StepOutcome(output=scrubber.value(output))

    async def _call(self, server: McpServer, step: McpStep, arguments: dict[str, Any]) -> Any:
        try:
            result = await mcp.call_tool(
                server, step.tool, arguments, timeout=step.timeout_seconds * _CALL_SHARE
            )
        except mcp.McpUnavailable as exc:
            raise ApplicationError(
                exc.message, type=exc.code, non_retryable=not exc.retryable
            ) from None
        except BatonError as exc:
            raise as_application_error(exc) from None
        if result.is_error:
            # The server's own answer: the same call would get it again.
            raise ApplicationError(
                f"{step.integration}.{step.tool} failed: {result.text or 'no reason given'}",
                type="mcp_tool_error",
                non_retryable=True,
            )
        return result.output

    async def _server(self, project_id: str, integration: str) -> McpServer:
        try:
            async with self._sessions() as session:
                row = await integration_repo.get_integration(
                    session=session, project_id=project_id, ref=integration
                )
                return integration_repo.reveal_mcp_server(
                    box=self._box, row=row, egress=self._egress
                )
        except NotFound:
            raise ApplicationError(
                f"no MCP integration {integration!r} in this project",
                type="not_found",
                non_retryable=True,
            ) from None
        except BatonError as exc:
            raise as_application_error(exc) from None
