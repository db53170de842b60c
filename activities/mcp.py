"""Calls to the tools of MCP servers: the `mcp` step of a tool run, and agents' MCP tools
(listed once when a task begins, then called). The integration is read and its key
decrypted here, at call time, from the name the step or agent holds; the server's failures
are named, and those that cannot improve on retry (a tool's `isError`, a refused address, a
missing command) fail at once."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.heartbeats import with_heartbeats
from activities.integrations import project_integration
from activities.steps import render_value
from baton.db.repositories import integrations as integration_repo
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import McpServer
from baton.domain.tasks import (
    ListMcpTools,
    McpToolCall,
    McpToolList,
    McpToolOffer,
    McpToolOutcome,
)
from baton.domain.tool_runs import StepCall, StepOutcome
from baton.domain.tools import McpStep
from baton.errors import BatonError
from baton.integrations import mcp
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.settings import Settings

logger = logging.getLogger("baton.mcp")

# An agent's MCP activities: the listing of every attached server, and one call.
_LIST_TIMEOUT_S = 20.0
_CALL_TIMEOUT_S = 60.0
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
        self._stdio_enabled = settings.mcp_stdio_enabled

    @activity.defn(name="baton.step.mcp")
    async def step(self, call: StepCall) -> StepOutcome:
        """A tool run's step: an `isError` result fails it, without a retry (the same call
        would get the same answer)."""
        step = call.step
        assert isinstance(step, McpStep)
        arguments = render_value(step.arguments, call.context)
        server = await self._server(call.project_id, step.integration)
        timeout = step.timeout_seconds * _CALL_SHARE
        result, scrubber = await _call(server, step.tool, arguments, timeout)
        if result.is_error:
            raise ApplicationError(
                scrubber.text(
                    f"{step.integration}.{step.tool} failed: {result.text or 'no reason given'}"
                ),
                type="mcp_tool_error",
                non_retryable=True,
            )
        return StepOutcome(output=scrubber.value(result.output))

    @activity.defn(name="baton.mcp.list_tools")
    async def list_tools(self, request: ListMcpTools) -> McpToolList:
        """The tools each attachment offers, in order, each once (a server attached twice,
        with other tools or approvals, is listed for each). A server that cannot be listed is
        named in `unavailable` and offers nothing: the task goes on without it."""
        listed = McpToolList()
        for attached in request.attachments:
            try:
                server = await self._server(request.project_id, attached.integration)
                tools = await with_heartbeats(mcp.list_tools(server, timeout=_LIST_TIMEOUT_S))
            except (ApplicationError, BatonError) as exc:
                reason = exc.message
                logger.warning("MCP tools of %r not offered: %s", attached.integration, reason)
                listed.unavailable.append(f"{attached.integration}: {reason}")
                continue
            wanted = set(attached.tools) if attached.tools is not None else None
            offered = {(offer.integration, offer.tool) for offer in listed.tools}
            listed.tools += [
                McpToolOffer(
                    integration=attached.integration,
                    tool=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema,
                )
                for tool in tools
                if (wanted is None or tool.name in wanted)
                and (attached.integration, tool.name) not in offered
            ]
        return listed

    @activity.defn(name="baton.mcp.call")
    async def call(self, request: McpToolCall) -> McpToolOutcome:
        """An agent's call: an `isError` result is the model's to read, not a failure."""
        server = await self._server(request.project_id, request.integration)
        result, scrubber = await _call(server, request.tool, request.arguments, _CALL_TIMEOUT_S)
        if result.is_error:
            return McpToolOutcome(error=scrubber.text(result.text or "no reason given"))
        return McpToolOutcome(output=scrubber.value(result.output))

    async def _server(self, project_id: str, integration: str) -> McpServer:
        return await project_integration(
            self._sessions,
            project_id=project_id,
            ref=integration,
            kind="MCP",
            reveal=lambda row: integration_repo.reveal_mcp_server(
                box=self._box, row=row, egress=self._egress, stdio_enabled=self._stdio_enabled
            ),
        )


async def _call(
    server: McpServer, tool: str, arguments: dict[str, Any], timeout: float
) -> tuple[mcp.McpResult, SecretScrubber]:
    """The tool's result, with heartbeats, and the scrubber of the server's key for what is
    made of it. A failure to get one is an ApplicationError, retryable when trying again may
    help, scrubbed."""
    scrubber = SecretScrubber(
        {"api_key": server.api_key.get_secret_value()} if server.api_key else {}
    )
    try:
        result = await with_heartbeats(mcp.call_tool(server, tool, arguments, timeout=timeout))
    except BatonError as exc:
        raise scrubber.error(as_application_error(exc)) from None
    return result, scrubber
