"""Baton as an MCP server: `/mcp` speaks streamable HTTP (stateless) to any MCP client.

A caller authenticates with a project token (`Authorization: Bearer <token>`, or the API's own
`Token` scheme; an organisation token names its project as `/mcp?project_id=<id>`). It is
offered its project's tools, with their typed params as input schemas, and its agents as
`ask_<agent>`; `get_tool_run` and `get_task` poll what outlasted a call's wait.

A tool call is a real tool run (a `ToolRunWorkflow`, listed under `.../tool-runs`) and an
`ask_<agent>` call a real task: the call waits up to `mcp_wait_seconds` for the output or the
answer, and past it answers with the id to poll. A failed run is an error result naming the
reason. A viewer token lists and polls but runs nothing; a user group token is refused.

The tool list depends on who calls, so it is built per request: the ASGI endpoint
authenticates every HTTP request and leaves the caller in the request's scope, which the MCP
package hands each handler as `ctx.request`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from temporalio.client import Client
from temporalio.service import RPCError

from api.deps import presented_token, require_role
from api.rate_limits import count_request
from baton.db.repositories import accounts
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import tool_runs as run_repo
from baton.db.repositories import tools as tool_repo
from baton.db.repositories.agents import agent_spec
from baton.db.tables import Agent
from baton.domain.accounts import Principal, Role
from baton.domain.agents import tool_function_name
from baton.domain.llm import Message, MessageRole
from baton.domain.storable import UNSTORABLE_TEXT, first_unstorable
from baton.domain.tasks import TaskStatus
from baton.domain.tools import (
    ToolParam,
    ToolRunStatus,
    ToolSpec,
    parameters_json_schema,
    params_json_schema,
)
from baton.errors import BatonError, InvalidInput, PermissionDenied
from baton.services import closed_runs
from baton.services.tasks import start_agent_task
from baton.services.tool_runs import start_tool_run, wait_for_run
from baton.settings import Settings

MCP_PATH = "/mcp"
ASK_PREFIX = "ask_"
GET_TASK = "get_task"
GET_TOOL_RUN = "get_tool_run"
# How often a call waiting for an agent's answer reads the task's status.
ANSWER_POLL_SECONDS = 0.2
# Where the endpoint leaves the authenticated caller for the handlers.
_CALLER = "baton.mcp.caller"
# The statuses a task has its answer in: idle (waiting for a follow-up) or completed.
_ANSWERED = {TaskStatus.idle, TaskStatus.completed}


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    project_id: str


Call = Callable[[Caller, dict[str, Any]], Awaitable[types.CallToolResult]]


@dataclass(frozen=True, slots=True)
class Offer:
    """One tool the caller is offered: what `tools/list` shows, and what a call does.
    `runs` marks a call that starts work (a tool run, a task), which needs the editor role."""

    definition: types.Tool
    call: Call
    runs: bool


class AskArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=100_000)
    params: dict[str, Any] = Field(default_factory=dict)


class GetTaskArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1, max_length=100)


class GetToolRunArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, max_length=100)


class McpServer:
    """The MCP server of one API process; `running()` spans the app's lifespan."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        temporal_client: Client,
        settings: Settings,
    ) -> None:
        self.session_factory = session_factory
        self.temporal = temporal_client
        self.settings = settings
        self.server: Server[Any] = Server(
            "baton",
            version="0.1.0",
            instructions="The tools and agents of one Baton project. A call that outlasts its "
            f"wait answers with an id: poll it with {GET_TOOL_RUN} or {GET_TASK}.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        # Stateless: every request stands alone, so any API replica serves it. No check of
        # Host/Origin against DNS rebinding: a caller is its bearer token, which a web page
        # elsewhere does not hold, not an ambient cookie.
        self.sessions = StreamableHTTPSessionManager(self.server, stateless=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Runs the session manager for the block. Its task group must be left by the task
        that entered it, and an app's lifespan may end in another task than it began in (a
        test harness's fixtures do), so the manager runs in a task of its own."""
        ready, stop = asyncio.Event(), asyncio.Event()

        async def serve() -> None:
            async with self.sessions.run():
                ready.set()
                await stop.wait()

        serving = asyncio.create_task(serve(), name="baton-mcp-sessions")
        readying = asyncio.create_task(ready.wait())
        await asyncio.wait({serving, readying}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            readying.cancel()
            serving.result()  # raises what stopped it
        try:
            yield
        finally:
            stop.set()
            await serving

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app at `/mcp`. A caller that is not let in gets the API's JSON error: the
        app's error handlers render what `_authenticate` raises, as for any route."""
        scope[_CALLER] = await self._authenticate(Request(scope, receive))
        await self.sessions.handle_request(scope, receive, send)

    async def _authenticate(self, request: Request) -> Caller:
        token = presented_token(request)
        async with self.session_factory() as session:
            principal = await accounts.authenticate(session=session, token=token)
            if principal.is_user_group:
                raise PermissionDenied(
                    "a user group token reaches only its own tasks, not a project's tools; "
                    "use a project token"
                )
            # A project token's project, unless the URL names one (which it must reach).
            project_id = request.query_params.get("project_id") or principal.project_id
            if not project_id:
                raise InvalidInput(
                    "an organisation token names its project: /mcp?project_id=<project id> "
                    "(or use a token scoped to the project)"
                )
            project = await accounts.get_project(
                session=session, principal=principal, project_id=project_id
            )
            await session.commit()  # the token's `last_used_at`
        await count_request(request, principal)
        return Caller(principal=principal, project_id=project.id)

    # The MCP handlers

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Request], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        offers = await self._offers(_caller(ctx))
        return types.ListToolsResult(tools=[offer.definition for offer in offers.values()])

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Request], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller = _caller(ctx)
        offer = (await self._offers(caller)).get(params.name)
        if offer is None:
            return _error(f"this project offers no tool {params.name!r}; tools/list has its tools")
        arguments = params.arguments or {}
        unstorable = first_unstorable(arguments)
        if unstorable is not None:
            where = ".".join(str(part) for part in unstorable) or "arguments"
            return _error(f"{where}: {UNSTORABLE_TEXT}")
        try:
            if offer.runs:
                require_role(caller.principal, Role.editor)
            return await offer.call(caller, arguments)
        except BatonError as exc:
            return _error(exc.message)
        except ValidationError as exc:
            return _error(_invalid_arguments(exc))

    # What the caller is offered

    async def _offers(self, caller: Caller) -> dict[str, Offer]:
        """The project's tools, then its agents, each under a name unique in the list (a
        second `Echo`, or a tool slugged like another, gets `_2`)."""
        async with self.session_factory() as session:
            tools = await tool_repo.current_specs(session=session, project_id=caller.project_id)
            agents = await agent_repo.list_agents(session=session, project_id=caller.project_id)
        candidates: list[Offer] = []
        if tools.items:
            candidates.append(self._get_tool_run_offer())
        if agents.items:
            candidates.append(self._get_task_offer())
        candidates += [self._tool_offer(tool.id, spec) for tool, spec in tools.items]
        candidates += [self._ask_offer(agent) for agent in agents.items]
        offers: dict[str, Offer] = {}
        for candidate in candidates:
            name = _unique(candidate.definition.name, offers)
            definition = candidate.definition.model_copy(update={"name": name})
            offers[name] = replace(candidate, definition=definition)
        return offers

    def _tool_offer(self, tool_id: str, spec: ToolSpec) -> Offer:
        async def call(caller: Caller, arguments: dict[str, Any]) -> types.CallToolResult:
            return await self._run_tool(caller, tool_id, arguments)

        definition = types.Tool(
            name=tool_function_name(spec.name),
            title=spec.name,
            description=spec.description or f"Runs the tool {spec.name!r}",
            input_schema=parameters_json_schema(spec),
        )
        return Offer(definition=definition, call=call, runs=True)

    def _ask_offer(self, agent: Agent) -> Offer:
        spec = agent_spec(agent)
        properties: dict[str, Any] = {
            "message": {"type": "string", "description": f"What to ask {spec.name}"}
        }
        if spec.params:
            properties["params"] = {
                **params_json_schema(spec.params),
                "description": "The agent's task params",
            }
        about = spec.description or f"Asks the agent {spec.name!r} and answers with its reply."
        definition = types.Tool(
            name=tool_function_name(f"{ASK_PREFIX}{spec.name}"),
            title=f"Ask {spec.name}",
            description=f"{about} A task that takes longer answers with its task_id: poll it "
            f"with {GET_TASK}.",
            input_schema={
                "type": "object",
                "properties": properties,
                "required": ["message", *(["params"] if _requires_params(spec.params) else [])],
                "additionalProperties": False,
            },
        )

        async def call(caller: Caller, arguments: dict[str, Any]) -> types.CallToolResult:
            return await self._ask(caller, agent.id, AskArguments.model_validate(arguments))

        return Offer(definition=definition, call=call, runs=True)

    def _get_task_offer(self) -> Offer:
        definition = types.Tool(
            name=GET_TASK,
            title="Get a task's answer",
            description="The answer of a task an ask_<agent> call started (waits for it a "
            "while), or its status while it still works.",
            input_schema=_schema_of(GetTaskArguments),
        )

        async def call(caller: Caller, arguments: dict[str, Any]) -> types.CallToolResult:
            task_id = GetTaskArguments.model_validate(arguments).task_id
            return await self._await_answer(caller, task_id)

        return Offer(definition=definition, call=call, runs=False)

    def _get_tool_run_offer(self) -> Offer:
        definition = types.Tool(
            name=GET_TOOL_RUN,
            title="Get a tool run's output",
            description="The output of a tool run a call started (waits for it a while), or "
            "its status while it still runs.",
            input_schema=_schema_of(GetToolRunArguments),
        )

        async def call(caller: Caller, arguments: dict[str, Any]) -> types.CallToolResult:
            run_id = GetToolRunArguments.model_validate(arguments).run_id
            return await self._await_run(caller, run_id)

        return Offer(definition=definition, call=call, runs=False)

    # Tool runs

    async def _run_tool(
        self, caller: Caller, tool_id: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        async with self.session_factory() as session:
            run = await start_tool_run(
                session=session,
                temporal_client=self.temporal,
                settings=self.settings,
                project_id=caller.project_id,
                tool_id=tool_id,
                params=arguments,
            )
        return await self._await_run(caller, run.id)

    async def _await_run(self, caller: Caller, run_id: str) -> types.CallToolResult:
        # No database session is held while the run works.
        async with self.session_factory() as session:
            run = await run_repo.get_run(
                session=session, project_id=caller.project_id, run_id=run_id
            )
        if not ToolRunStatus(run.status).is_final:
            with contextlib.suppress(RPCError):  # Temporal away: the status below says so
                await wait_for_run(self.temporal, run, self.settings.mcp_wait_seconds)
        async with self.session_factory() as session:
            run = await run_repo.get_run(
                session=session, project_id=caller.project_id, run_id=run_id
            )
            if not ToolRunStatus(run.status).is_final and await closed_runs.settle_if_closed(
                client=self.temporal,
                session=session,
                workflow_id=run.workflow_id,
                updated_at=run.updated_at,
            ):
                await session.commit()
                await session.refresh(run)
        status = ToolRunStatus(run.status)
        about = {"run_id": run.id, "status": status.value}
        if status is ToolRunStatus.succeeded:
            return _result(run.output)
        if status.is_final:
            return _error(f"the tool run {status.value}: {run.error or 'no reason given'}", about)
        return _reply(
            f"The tool run is still {status.value}; call {GET_TOOL_RUN} with run_id "
            f"{run.id} for its output.",
            about,
        )

    # Agent tasks

    async def _ask(
        self, caller: Caller, agent_id: str, arguments: AskArguments
    ) -> types.CallToolResult:
        async with self.session_factory() as session:
            agent = await agent_repo.get_agent(
                session=session, project_id=caller.project_id, agent_id=agent_id
            )
            task = await start_agent_task(
                session=session,
                temporal_client=self.temporal,
                settings=self.settings,
                agent=agent,
                message=arguments.message,
                params=arguments.params,
            )
        return await self._await_answer(caller, task.id)

    async def _await_answer(self, caller: Caller, task_id: str) -> types.CallToolResult:
        """The task's answer once it has one, or an error once it failed; past the wait (or
        while a person must approve a tool call), its status and id to poll."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.mcp_wait_seconds
        while True:
            result, settled = await self._task_result(caller, task_id)
            if settled or loop.time() >= deadline:
                return result
            await asyncio.sleep(ANSWER_POLL_SECONDS)

    async def _task_result(self, caller: Caller, task_id: str) -> tuple[types.CallToolResult, bool]:
        async with self.session_factory() as session:
            task = await task_repo.get_task(
                session=session,
                principal=caller.principal,
                project_id=caller.project_id,
                task_id=task_id,
            )
            if not TaskStatus(task.status).is_final and await closed_runs.settle_if_closed(
                client=self.temporal,
                session=session,
                workflow_id=task.workflow_id,
                updated_at=task.updated_at,
            ):
                await session.commit()
                await session.refresh(task)
            status = TaskStatus(task.status)
            about = {"task_id": task.id, "status": status.value}
            if status in _ANSWERED:
                answer = _last_answer(
                    await task_repo.list_messages(session=session, task_id=task.id)
                )
                return _reply(answer, {**about, "answer": answer}), True
        if status.is_final or status is TaskStatus.escalated:
            return _error(
                f"the task ended {status.value}: {task.error or 'no reason given'}", about
            ), True
        if status is TaskStatus.waiting_approval:
            return _reply(
                f"The task waits for a person to approve a tool call; call {GET_TASK} with "
                f"task_id {task.id} once it is decided.",
                about,
            ), True
        if status is TaskStatus.out_of_credits:
            return _reply(
                "The task is paused: its organisation is out of credits. It resumes when "
                f"credits arrive; call {GET_TASK} with task_id {task.id} later.",
                about,
            ), True
        return _reply(
            f"The task is still {status.value}; call {GET_TASK} with task_id {task.id} for "
            "its answer.",
            about,
        ), False


class McpEndpoint:
    """The ASGI app routed at `/mcp`: the app's MCP server exists once its lifespan began."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server: McpServer = scope["app"].state.mcp
        await server.handle(scope, receive, send)


def _caller(ctx: ServerRequestContext[Any, Request]) -> Caller:
    if ctx.request is None:
        raise RuntimeError("Baton's MCP server is served over HTTP only, through McpEndpoint")
    caller: Caller = ctx.request.scope[_CALLER]
    return caller


def _unique(name: str, taken: dict[str, Offer]) -> str:
    unique, number = name, 1
    while unique in taken:
        number += 1
        unique = f"{name[:60]}_{number}"
    return unique


def _last_answer(messages: list[Message]) -> str:
    replies = (m.content for m in reversed(messages) if m.role is MessageRole.assistant)
    return next((content for content in replies if content), "")


def _requires_params(params: Sequence[ToolParam]) -> bool:
    return bool(params_json_schema(params)["required"])


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _result(output: Any) -> types.CallToolResult:
    """A run's output as text, and as structured content: an object as it is, any other
    value as `{"result": value}` (structured content is an object in MCP)."""
    structured = output if isinstance(output, dict) else {"result": output}
    return types.CallToolResult(
        content=[types.TextContent(text=_text(output))], structured_content=structured
    )


def _reply(text: str, about: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=about)


def _error(text: str, about: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=about, is_error=True
    )


def _invalid_arguments(exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors()[:3]
    )
    return f"invalid arguments: {problems}"
