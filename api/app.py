"""The FastAPI application: `create_app(settings)`; resources live for the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.routing import Route
from temporalio.client import Client

from api import console, sharing
from api.errors import install_error_handlers
from api.event_hub import EventHub
from api.limits import BodySizeLimit, refuse_unstorable_text
from api.mcp_server import MCP_PATH, McpEndpoint, McpServer
from api.rate_limits import RateLimitHeaders
from api.routes import (
    agents,
    audit,
    bulk_tasks,
    credits,
    email_inboxes,
    health,
    integration_kinds,
    integrations,
    knowledge,
    knowledge_enrichment,
    knowledge_sources,
    members,
    projects,
    secrets,
    shares,
    slack_triggers,
    snippets,
    task_events,
    tasks,
    temporal_codec,
    tokens,
    tool_runs,
    tool_templates,
    tools,
    triggers,
    usage,
    user_groups,
    workforce_tasks,
    workforces,
)
from api.temporal_codec import WorkflowProjects
from baton import temporal
from baton.db.engine import create_engine, create_session_factory
from baton.security import SecretBox
from baton.services.credits import plan_book
from baton.settings import Settings
from baton.temporal import payload_keys


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    """`temporal_client` lets a caller share a client it already has (tests, `baton up`);
    without one the app opens a lazy client that connects when first used."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A wrong plans file or default plan stops the start, named.
        app.state.plans = plan_book(settings)
        engine = create_engine(
            settings.resolved_database_url, busy_timeout_s=settings.sqlite_busy_timeout_seconds
        )
        app.state.settings = settings
        app.state.session_factory = create_session_factory(engine)
        app.state.secret_box = SecretBox.from_settings(settings)
        app.state.temporal = temporal_client or await temporal.connect(
            settings, lazy=True, session_factory=app.state.session_factory
        )
        app.state.payload_keys = payload_keys(settings)
        app.state.workflow_projects = WorkflowProjects(app.state.temporal)
        app.state.event_hub = EventHub(app.state.session_factory, settings.resolved_database_url)
        app.state.mcp = McpServer(
            session_factory=app.state.session_factory,
            temporal_client=app.state.temporal,
            settings=settings,
        )
        await app.state.event_hub.start()
        try:
            # The MCP server's session manager runs its requests in a task group of its own.
            async with app.state.mcp.running():
                yield
        finally:
            await app.state.event_hub.stop()
            await engine.dispose()

    # The docs pages (/docs, /redoc) load their scripts from the package, not a CDN: they
    # work on a machine without internet.
    app: FastAPI = FastAPIOffline(
        title="Baton",
        summary=(
            "Self-hosted AI agents whose every task and tool run is a durable Temporal workflow"
        ),
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(refuse_unstorable_text)],
    )
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(temporal_codec.CodecCORS, ui_url=settings.temporal_ui_url)
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    routers = (health, user_groups, projects, members, tokens, agents, tasks, tools, tool_runs)
    app.include_router(shares.agent_router)
    app.include_router(shares.tool_router)
    app.include_router(shares.dashboard_router)
    for module in (
        *routers,
        task_events,
        tool_templates,
        secrets,
        snippets,
        triggers,
        slack_triggers,
        email_inboxes,
    ):
        app.include_router(module.router)
    app.include_router(integrations.router)
    app.include_router(integration_kinds.router)
    app.include_router(knowledge.router)
    app.include_router(knowledge_enrichment.router)
    app.include_router(knowledge_sources.router)
    app.include_router(bulk_tasks.router)
    app.include_router(workforces.router)
    app.include_router(credits.router)
    app.include_router(credits.project_router)
    app.include_router(audit.router)
    app.include_router(usage.router)
    app.include_router(temporal_codec.router)
    app.include_router(workforce_tasks.router)
    # The web console: HTML pages at `/`, outside the OpenAPI schema.
    console.install(app)
    # Share links' public pages, the chat widget and the user-group dashboard.
    sharing.install(app)
    # Baton as an MCP server (api/mcp_server.py): streamable HTTP, not a JSON route.
    app.router.routes.append(
        Route(MCP_PATH, McpEndpoint(), methods=["GET", "POST", "DELETE"], include_in_schema=False)
    )
    return app
