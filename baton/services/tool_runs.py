"""Saving a tool (validated as a whole), starting a run of it, and reading a run's progress.

The workflow is started and queried by its registered names, so this library does not import
the workflow layer (tests/test_services.py checks them against `ToolRunWorkflow`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.service import RPCError

from baton import temporal
from baton.db.repositories import credits as credit_repo
from baton.db.repositories import integrations as integration_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import ToolRun
from baton.domain.integrations import IntegrationKind
from baton.domain.tool_checks import check_tool, referenced_snippets, validate_params
from baton.domain.tool_runs import ToolRunInput, ToolRunProgress
from baton.domain.tools import (
    EmailSendStep,
    LlmStep,
    McpStep,
    SlackPostStep,
    ToolRunStatus,
    ToolSpec,
)
from baton.errors import InvalidInput, ServiceUnavailable
from baton.services import closed_runs
from baton.services.credits import plan_book
from baton.settings import Settings

logger = logging.getLogger("baton.tool_runs")

# The names workflows.tool_run.ToolRunWorkflow is registered and queried by.
TOOL_RUN_WORKFLOW = "ToolRunWorkflow"
PROGRESS_QUERY = "progress"

QUERY_TIMEOUT_S = 1.0


async def check_before_save(
    *, session: AsyncSession, project_id: str, spec: ToolSpec, tool_id: str | None = None
) -> None:
    known = {tool.id for tool in await tool_repo.list_tools(session=session, project_id=project_id)}
    snippets = await snippet_repo.snippet_names(session=session, project_id=project_id)
    check_tool(spec, known_tools=known, snippets=snippets)
    for index, step in enumerate(spec.steps):
        if isinstance(step, LlmStep) and step.integration is not None:
            await integration_repo.check_reference(
                session=session,
                project_id=project_id,
                name=step.integration,
                model=step.model,
                field=f"steps[{index}].integration",
            )
        if isinstance(step, McpStep | EmailSendStep):
            await integration_repo.check_kind_reference(
                session=session,
                project_id=project_id,
                name=step.integration,
                field=f"steps[{index}].integration",
                kind=IntegrationKind.mcp if isinstance(step, McpStep) else IntegrationKind.smtp,
            )
        if isinstance(step, SlackPostStep):
            await integration_repo.check_slack_reference(
                session=session,
                project_id=project_id,
                name=step.integration,
                field=f"steps[{index}].integration",
            )
    cycle = await tool_repo.find_cycle(
        session=session, project_id=project_id, tool_id=tool_id, spec=spec
    )
    if cycle:
        raise InvalidInput(
            "the tool would call itself: " + " -> ".join(cycle),
            details=[{"step": None, "field": "steps", "message": "cycle", "cycle": cycle}],
        )


async def start_tool_run(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    project_id: str,
    tool_id: str,
    params: dict[str, Any],
    source: str | None = None,
) -> ToolRun:
    version, specs = await tool_repo.pinned_closure(session=session, tool_id=tool_id)
    values = validate_params(specs[tool_id], params)
    snippets = await snippet_repo.snippet_values(
        session=session,
        project_id=project_id,
        names=set().union(*(referenced_snippets(spec) for spec in specs.values())),
    )
    plans = plan_book(settings)
    run_id = str(uuid.uuid4())
    # Refused (402) unless the organisation can pay the run's action, else charged it.
    limits = await credit_repo.charge_tool_run(
        session=session, plans=plans, project_id=project_id, run_id=run_id, require=True
    )
    run = await run_repo.create_run(
        session=session,
        run_id=run_id,
        project_id=project_id,
        tool_id=tool_id,
        tool_version=version,
        params=values,
        source=source,
    )
    await session.commit()
    try:
        await temporal_client.start_workflow(
            TOOL_RUN_WORKFLOW,
            ToolRunInput(
                run_id=run_id,
                project_id=project_id,
                tool_id=tool_id,
                tool_version=version,
                specs=specs,
                params=values,
                snippets=snippets,
                time_limit_seconds=limits.tool_run_seconds,
            ),
            id=run.workflow_id,
            task_queue=settings.temporal_task_queue,
            search_attributes=temporal.run_search_attributes(
                project_id=project_id, kind="tool-run", status=ToolRunStatus.queued.value
            ),
            static_summary=f"tool {specs[tool_id].name} v{version}",
        )
    except (RPCError, RuntimeError) as exc:
        logger.warning("could not start tool run %s: %s", run_id, exc)
        await run_repo.finish_run(
            session=session,
            run_id=run_id,
            status=ToolRunStatus.failed,
            output=None,
            error="the run could not be started: Temporal is unavailable",
        )
        await session.commit()
        raise ServiceUnavailable(
            "Temporal is unavailable; the run was not started", details={"run_id": run_id}
        ) from exc
    return run


async def run_view(
    *, session: AsyncSession, temporal_client: Client, run: ToolRun
) -> tuple[ToolRunStatus, list[Any]]:
    """The run's status and step results: from the database once it ended, else asked of
    the running workflow (its steps are written to the database only at the end)."""
    status = ToolRunStatus(run.status)
    if not status.is_final and await closed_runs.settle_if_closed(
        client=temporal_client,
        session=session,
        workflow_id=run.workflow_id,
        updated_at=run.updated_at,
    ):
        await session.commit()
        await session.refresh(run)
        status = ToolRunStatus(run.status)
    if status.is_final:
        return status, await run_repo.list_steps(session=session, run_id=run.id)
    handle = temporal_client.get_workflow_handle(run.workflow_id)
    try:
        # Temporal holds a query until the run's first workflow task is done: a run no
        # worker has picked up yet would hang here, so answer from the database instead.
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            progress = await handle.query(PROGRESS_QUERY, result_type=ToolRunProgress)
    except (RPCError, WorkflowQueryFailedError, TimeoutError):
        return status, []
    # Final only once the database has the output; until then it is still finishing.
    live = ToolRunStatus.running if progress.status.is_final else progress.status
    return live, progress.records


async def wait_for_run(temporal_client: Client, run: ToolRun, seconds: float) -> bool:
    """True when the run finished within `seconds` (its result is then in the database)."""
    handle = temporal_client.get_workflow_handle(run.workflow_id)
    try:
        async with asyncio.timeout(seconds):
            await handle.result()
    except TimeoutError:
        return False
    except WorkflowFailureError:
        return True
    return True
