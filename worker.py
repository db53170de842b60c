"""The worker process: settings -> Temporal client -> activity classes -> Worker.

Run it with `python worker.py` or `baton worker`; run N of them on N machines against one
Temporal task queue to scale out."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.bulk_tasks import BulkTaskActivities
from activities.email import EmailActivities
from activities.enrichment import EnrichmentActivities
from activities.events import EventActivities
from activities.knowledge import EmbeddingActivities
from activities.knowledge_sources import SourceSyncActivities
from activities.knowledge_steps import KnowledgeStepActivities
from activities.llm import LlmActivities
from activities.mcp import McpActivities
from activities.slack import SlackActivities
from activities.steps import StepActivities, ToolRunActivities
from activities.tasks import TaskActivities
from activities.workforce_tasks import WorkforceTaskActivities
from baton import temporal
from baton.db.engine import create_engine, create_session_factory
from baton.domain.egress import EgressPolicy
from baton.integrations.sandbox import SandboxUnavailable, find_bubblewrap
from baton.knowledge.embeddings import EmbedderFactory
from baton.knowledge.rerank import Rerankers
from baton.logs import configure_logging
from baton.security import SecretBox
from baton.services import closed_runs, credit_alerts, history_retention, payload_retention
from baton.services import embedding as embedding_service
from baton.services.credits import plan_book
from baton.services.provider_configs import project_provider_configs
from baton.settings import CodeSandbox, Settings
from workflows.agent_task import AgentTaskWorkflow
from workflows.bulk_tasks import BulkTaskWorkflow
from workflows.enrichment import EnrichmentWorkflow
from workflows.knowledge import EmbedSetWorkflow
from workflows.knowledge_sources import KnowledgeSourceSyncWorkflow
from workflows.slack_reply import SlackReplyWorkflow
from workflows.tool_run import ToolRunWorkflow
from workflows.workforce import WorkforceWorkflow

logger = logging.getLogger("baton.worker")

SWEEP_INTERVAL_S = 30.0
SETTLE_LOOKBACK = timedelta(days=1)

WORKFLOWS = [
    AgentTaskWorkflow,
    ToolRunWorkflow,
    EmbedSetWorkflow,
    EnrichmentWorkflow,
    WorkforceWorkflow,
    SlackReplyWorkflow,
    KnowledgeSourceSyncWorkflow,
    BulkTaskWorkflow,
]
# Deterministic libraries workflows use for pure steps; passed through the sandbox because
# they keep module-level caches (Jinja's compiles templates lazily, behind a lock).
PURE_LIBRARIES = ("jinja2", "markupsafe", "jmespath", "jsonschema", "referencing", "rpds")


def workflow_runners(settings: Settings) -> tuple[WorkflowRunner, WorkflowRunner]:
    """The sandboxed runner, and the one for workflows that opt out of the sandbox: the worker
    and the replay test (tests/test_replay.py) run workflows the same way."""
    sandbox = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PURE_LIBRARIES)
    )
    # ToolRunWorkflow opts out of the sandbox (see its module); the setting puts it back.
    unsandboxed = sandbox if settings.sandbox_all_workflows else UnsandboxedWorkflowRunner()
    return sandbox, unsandboxed


HEARTBEAT_THROTTLE = timedelta(seconds=1)


def create_worker(
    client: Client,
    *,
    task_queue: str,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings | None = None,
) -> Worker:
    settings = settings or Settings()
    provider_configs = project_provider_configs(session_factory, settings)
    plans = plan_book(settings)
    task_activities = TaskActivities(session_factory, plans)
    workforce_tasks = WorkforceTaskActivities(session_factory, plans)
    llm_activities = LlmActivities(provider_configs, session_factory, plans)
    events = EventActivities(session_factory, plans)
    steps = StepActivities(session_factory, settings, provider_configs, plans)
    tool_runs = ToolRunActivities(session_factory, plans)
    mcp = McpActivities(session_factory, settings)
    slack = SlackActivities(session_factory, settings)
    email = EmailActivities(session_factory, settings)
    enrichment = EnrichmentActivities(session_factory, settings, provider_configs, plans)
    bulk_tasks = BulkTaskActivities(client, session_factory, settings)
    # The local embedding model loads on the first batch of a `local` set, not here.
    embedders = EmbedderFactory(provider_configs)
    embedding = EmbeddingActivities(session_factory, embedders)
    knowledge_steps = KnowledgeStepActivities(
        session_factory, embedders, Rerankers(provider_configs)
    )
    source_syncs = SourceSyncActivities(session_factory, settings)
    sandbox, unsandboxed = workflow_runners(settings)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=sandbox,
        unsandboxed_workflow_runner=unsandboxed,
        activities=[
            task_activities.begin,
            task_activities.set_status,
            task_activities.put_message,
            task_activities.record,
            task_activities.admit,
            workforce_tasks.begin,
            workforce_tasks.record,
            llm_activities.complete,
            llm_activities.chat,
            events.append,
            steps.llm,
            steps.http,
            steps.code,
            mcp.step,
            mcp.list_tools,
            mcp.call,
            slack.post_step,
            slack.await_answer,
            slack.post_answer,
            email.send,
            knowledge_steps.search,
            knowledge_steps.insert,
            knowledge_steps.update,
            knowledge_steps.delete,
            tool_runs.finish,
            enrichment.batch,
            enrichment.finish,
            bulk_tasks.start_batch,
            bulk_tasks.set_status,
            embedding.embed_batch,
            embedding.finish,
            source_syncs.plan,
            source_syncs.sync_batch,
            source_syncs.finish,
        ],
        # A cancel reaches an activity only in the answer to a heartbeat, which the SDK
        # otherwise sends at most every 0.8 x the heartbeat timeout (16 s for a model call):
        # a cancelled task would keep the provider generating, and billing, that long.
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )


async def run(settings: Settings) -> None:
    engine = create_engine(settings.resolved_database_url)
    session_factory = create_session_factory(engine)
    client = await temporal.connect(settings, session_factory=session_factory)
    await temporal.ensure_search_attributes(client, settings.temporal_namespace)
    worker = create_worker(
        client,
        task_queue=settings.temporal_task_queue,
        session_factory=session_factory,
        settings=settings,
    )
    await report_code_sandbox(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logger.info(
        "worker polling task queue %r on %s",
        settings.temporal_task_queue,
        settings.temporal_address,
    )
    try:
        resumed = await embedding_service.resume_pending(
            client, session_factory, task_queue=settings.temporal_task_queue
        )
        if resumed:
            logger.info("embedding the rows %d knowledge sets were waiting with", resumed)
    except Exception:  # the worker still starts; the next change of a set embeds it
        logger.warning("could not resume waiting embeddings", exc_info=True)
    sweepers = [
        # Runs terminated in Temporal get their final status in the database too.
        asyncio.create_task(
            _sweep_closed_workflows(
                "settle closed runs",
                lambda since: closed_runs.settle_closed_since(
                    client=client, session_factory=session_factory, since=since
                ),
                lookback=SETTLE_LOOKBACK,
            )
        ),
        # Large payloads go once the history that refers to them has.
        asyncio.create_task(
            _sweep_closed_workflows(
                "expire payload blobs",
                lambda since: payload_retention.sweep(
                    client=client, session_factory=session_factory, since=since
                ),
                # Temporal lists closed workflows for as long as it keeps their history.
                lookback=await payload_retention.history_retention(client),
            )
        ),
        # Finished tasks and tool runs go once their organisation's plan keeps them no more.
        asyncio.create_task(
            history_retention.delete_forever(
                session_factory=session_factory, plans=plan_book(settings)
            )
        ),
        # Usage alerts go to their webhook after the debit that reached them committed.
        asyncio.create_task(
            credit_alerts.deliver_forever(
                session_factory=session_factory,
                box=SecretBox.from_settings(settings),
                policy=EgressPolicy.from_settings(settings),
            )
        ),
    ]
    try:
        async with worker:
            await stop.wait()
    finally:
        for sweeper in sweepers:
            sweeper.cancel()
        await engine.dispose()
    logger.info("worker stopped")


async def _sweep_closed_workflows(
    what: str,
    sweep: Callable[[datetime], Awaitable[object]],
    *,
    lookback: timedelta,
    interval: float = SWEEP_INTERVAL_S,
) -> None:
    """Runs `sweep` over the workflows Temporal closed since the pass before, every
    `interval`. The first pass looks back `lookback`, so workflows closed while no worker ran
    are covered too; later ones look back to the pass before, with a margin for Temporal's
    visibility to catch up."""
    since = datetime.now(UTC) - lookback
    while True:
        started = datetime.now(UTC)
        try:
            await sweep(since)
            since = started - timedelta(seconds=2 * interval)
        except Exception:  # Temporal or the database away: the next pass covers this one's
            logger.warning("could not %s", what, exc_info=True)
        await asyncio.sleep(interval)


async def report_code_sandbox(settings: Settings) -> None:
    """Says at start whether code steps will run (the check is remembered for every step)."""
    if not settings.code_steps_enabled:
        return
    if settings.code_sandbox is CodeSandbox.none:
        logger.warning(
            "BATON_CODE_SANDBOX=none: code steps run WITHOUT a sandbox, with this worker's "
            "access to its files, environment and network; for development only"
        )
        return
    try:
        sandbox = await find_bubblewrap(settings.code_bwrap_path)
    except SandboxUnavailable as exc:
        logger.error("code steps will be refused: %s", exc.message)
    else:
        logger.info("code steps run in bubblewrap (%s)", sandbox.executable)


if __name__ == "__main__":
    configure_logging()
    asyncio.run(run(Settings()))
