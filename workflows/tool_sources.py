"""What an agent task can call, resolved once when it starts, through one seam.

A source turns what the task pinned into callables: the definition the model sees, the
approval policy the task applies before a call runs (`AgentTool`: approval, max automatic
runs), and how a call runs. The sources today: the agent's project tools and the knowledge
sets it searches (each call a child `ToolRunWorkflow`), in a workforce the agents its node
may delegate to (each call a child `AgentTaskWorkflow`), and the tools of the MCP servers it
attaches (listed when the task began, `task.mcp_tools`; each call an activity). The agent
workflow only gates and runs callables, so a new source is one function here and its
runner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.agents import AgentSpec, AgentTool, Approval, tool_function_name
    from baton.domain.events import EventDraft, EventType
    from baton.domain.knowledge import KNOWLEDGE_TOOL_PREFIX, AttachMode, knowledge_tool_id
    from baton.domain.llm import ToolCall, ToolDefinition
    from baton.domain.tasks import (
        MAX_DELEGATION_DEPTH,
        AgentTaskInput,
        AgentTaskResult,
        Delegation,
        McpToolCall,
        McpToolOffer,
        McpToolOutcome,
        TaskSpend,
        TaskStatus,
        task_workflow_id,
    )
    from baton.domain.tool_checks import validate_params
    from baton.domain.tool_runs import NewToolRun, ToolRunInput, tool_run_workflow_id
    from baton.domain.tools import ToolRunStatus, ToolSpec, parameters_json_schema
    from baton.domain.workforces import AgentNode, DelegateTask, Edge, delegate_tool_name
    from baton.errors import BatonError
    from baton.search_attributes import run_search_attributes
    from workflows import policies
    from workflows.tool_run import ToolRunWorkflow

NEEDS_APPROVAL_ARG = "needs_approval"
MAX_TOOL_RESULT_CHARS = 20_000
# `workflow.patched` id, kept from when this code was the agent workflow's.
KEEP_AGENT_TOOL_RUNS = "keep-agent-tool-runs"
# The registered name of `AgentTaskWorkflow`, which a delegation starts as a child (by name:
# that workflow imports this module).
AGENT_TASK_WORKFLOW = "AgentTaskWorkflow"

# What a call returns: what the model is told, and the event that ends the call (written
# with the tool message).
Outcome = tuple[str, EventDraft | None]


class EventWriter(Protocol):
    async def __call__(
        self, *events: EventDraft, tool_runs: list[NewToolRun] | None = None
    ) -> None: ...


@dataclass(frozen=True)
class TaskContext:
    """What a running call may use of its task."""

    task_id: str
    input: AgentTaskInput
    tools: dict[str, ToolSpec]
    snippets: dict[str, str]
    params: dict[str, Any]
    write_events: EventWriter
    # The delegations the task made, which its result carries to the workforce task.
    delegations: list[Delegation] = field(default_factory=list)
    # What the task spent: each project tool run it starts is an action.
    spend: TaskSpend = field(default_factory=TaskSpend)
    # Held by a `task: same` delegation: one continues the conversation at a time.
    conversation: asyncio.Lock = field(default_factory=asyncio.Lock)


# Runs an approved call with its (possibly edited) arguments, after `leading` events (the
# call's request, unless its approval wrote it already).
Runner = Callable[[TaskContext, ToolCall, dict[str, Any], list[EventDraft]], Awaitable[Outcome]]


@dataclass(frozen=True)
class CallableTool:
    definition: ToolDefinition
    # Its approval; `policy.tool_id` is the key its automatic runs are counted under.
    policy: AgentTool
    run: Runner
    # Set when the task may not make this call at all (told to the model as a tool error).
    refusal: str | None = None


# A source: what the task's agent may call of one kind, from what the task pinned.
Source = Callable[[AgentTaskInput, AgentSpec, dict[str, ToolSpec]], list[CallableTool]]


def callable_tools(
    task: AgentTaskInput, agent: AgentSpec, tools: dict[str, ToolSpec]
) -> dict[str, CallableTool]:
    """Everything the task's agent may call, by the name the model calls it. Delegations
    come first, so a delegate tool is always `ask_<node>`; a name taken twice gets a suffix."""
    by_name: dict[str, CallableTool] = {}
    for source in SOURCES:
        for tool in source(task, agent, tools):
            name = tool.definition.name
            if name in by_name:
                name = f"{name}_{len(by_name)}"[:64]
                tool = replace(tool, definition=tool.definition.model_copy(update={"name": name}))
            by_name[name] = tool
    return by_name


def _offered(schema: dict[str, Any], approval: Approval) -> dict[str, Any]:
    """The parameters the model sees: with `needs_approval` when the agent decides."""
    if approval is Approval.agent_decides:
        schema["properties"][NEEDS_APPROVAL_ARG] = {
            "type": "boolean",
            "description": "true when a person should approve this call first",
        }
    return schema


# Project tools and knowledge search: a child `ToolRunWorkflow` per call.


def _project_tools(
    task: AgentTaskInput, agent: AgentSpec, tools: dict[str, ToolSpec]
) -> list[CallableTool]:
    # An attached set searched as a tool: read-only, so it runs without approval.
    searched = [
        AgentTool(tool_id=knowledge_tool_id(attached.set_id))
        for attached in agent.knowledge
        if attached.mode is AttachMode.search
    ]
    found: list[CallableTool] = []
    for agent_tool in [*agent.tools, *searched]:
        spec = tools.get(agent_tool.tool_id)
        if spec is None:
            continue
        name = tool_function_name(spec.name)
        schema = _offered(parameters_json_schema(spec), agent_tool.approval)
        definition = ToolDefinition(name=name, description=spec.description, parameters=schema)
        runner = _tool_runner(agent_tool.tool_id, spec)
        found.append(CallableTool(definition=definition, policy=agent_tool, run=runner))
    return found


def _tool_runner(tool_id: str, spec: ToolSpec) -> Runner:
    async def run(
        context: TaskContext, call: ToolCall, arguments: dict[str, Any], leading: list[EventDraft]
    ) -> Outcome:
        return await run_tool(context, call, tool_id, spec, arguments, leading)

    return run


async def run_tool(
    context: TaskContext,
    call: ToolCall,
    tool_id: str,
    spec: ToolSpec,
    arguments: dict[str, Any],
    leading: list[EventDraft],
) -> Outcome:
    try:
        params = validate_params(spec, arguments)
    except BatonError as exc:
        if leading:
            await context.write_events(*leading)
        return f"Error: invalid arguments for {call.name}: {exc.message}", None
    run_id = str(workflow.uuid4())
    # A project tool's run is kept like one the API started: readable at
    # `.../tool-runs/{run_id}` and found in Temporal by its project. A knowledge search
    # is not a project tool and stays in the task's events only.
    persist = not tool_id.startswith(KNOWLEDGE_TOOL_PREFIX) and workflow.patched(
        KEEP_AGENT_TOOL_RUNS
    )
    project_id = context.input.project_id
    if persist:
        context.spend.actions += 1  # its record charges the run an action
    await context.write_events(
        *leading,
        EventDraft(
            type=EventType.tool_run_started,
            data={"call_id": call.id, "tool": call.name, "run_id": run_id},
            key=f"started:{call.id}",
        ),
        tool_runs=[NewToolRun(run_id=run_id, project_id=project_id, tool_id=tool_id, params=params)]
        if persist
        else [],
    )
    try:
        result = await workflow.execute_child_workflow(
            ToolRunWorkflow.run,
            ToolRunInput(
                run_id=run_id,
                project_id=project_id,
                tool_id=tool_id,
                tool_version=0,
                specs=context.tools,
                params=params,
                persist=persist,
                snippets=context.snippets,
                time_limit_seconds=context.input.tool_run_seconds,
            ),
            id=tool_run_workflow_id(run_id),
            static_summary=f"tool {spec.name} for {call.id}",
            search_attributes=run_search_attributes(
                project_id=project_id,
                kind="tool-run",
                status=ToolRunStatus.queued.value,
                workforce_id=context.input.workforce_id,
            )
            if persist
            else None,
        )
    except ChildWorkflowError as exc:
        reraise_cancel(exc)
        return tool_failed(call, str(exc.cause or exc))
    if result.status is not ToolRunStatus.succeeded:
        return tool_failed(call, result.error or result.status.value)
    return _completed(call, as_text(result.output))


# Delegations: in a workforce, the agents a node may ask, each call a child agent task.


def _delegations(
    task: AgentTaskInput, agent: AgentSpec, tools: dict[str, ToolSpec]
) -> list[CallableTool]:
    if task.workforce is None or task.node is None:
        return []
    found: list[CallableTool] = []
    for edge in task.workforce.delegates(task.node):
        name = delegate_tool_name(edge.to)
        schema = {
            "type": "object",
            "properties": {
                "message": {
                    "type": "string",
                    "description": f"What to ask {edge.to}: the only message it reads",
                }
            },
            "required": ["message"],
            "additionalProperties": False,
        }
        definition = ToolDefinition(
            name=name,
            description=edge.when or f"Ask the {edge.to} agent and get its answer",
            parameters=_offered(schema, edge.approval),
        )
        policy = AgentTool(
            tool_id=f"delegate:{edge.to}",
            approval=edge.approval,
            max_auto_runs=edge.max_auto_runs,
        )
        refusal = None
        if task.delegation_depth >= MAX_DELEGATION_DEPTH:
            refusal = (
                f"delegations nest at most {MAX_DELEGATION_DEPTH} deep and this task is "
                f"{task.delegation_depth} deep: answer without {name}"
            )
        runner = _delegation_runner(edge)
        found.append(
            CallableTool(definition=definition, policy=policy, run=runner, refusal=refusal)
        )
    return found


def _delegation_runner(edge: Edge) -> Runner:
    async def run(
        context: TaskContext, call: ToolCall, arguments: dict[str, Any], leading: list[EventDraft]
    ) -> Outcome:
        return await delegate(context, call, edge, arguments, leading)

    return run


async def delegate(
    context: TaskContext,
    call: ToolCall,
    edge: Edge,
    arguments: dict[str, Any],
    leading: list[EventDraft],
) -> Outcome:
    """Runs the target node's agent in a task of its own (a child `AgentTaskWorkflow` that
    answers once, working for this task); its answer is the call's result. With `task:
    same` the child continues this task's conversation (its first message is the
    conversation so far, then the request), one such delegation at a time."""
    message = arguments.get("message")
    unknown = sorted(set(arguments) - {"message"})
    if not isinstance(message, str) or not message.strip() or unknown:
        if leading:
            await context.write_events(*leading)
        problem = (
            f"unknown argument {unknown[0]!r}" if unknown else "message must be a non-empty text"
        )
        return f"Error: invalid arguments for {call.name}: {problem}", None
    if edge.task is DelegateTask.same:
        async with context.conversation:
            return await _run_delegation(context, call, edge, message, leading)
    return await _run_delegation(context, call, edge, message, leading)


async def _run_delegation(
    context: TaskContext, call: ToolCall, edge: Edge, message: str, leading: list[EventDraft]
) -> Outcome:
    task = context.input
    assert task.workforce is not None  # only a workforce's task has delegations
    target = task.workforce.node(edge.to)
    assert isinstance(target, AgentNode)  # check_graph: a delegation goes to an agent node
    same = edge.task is DelegateTask.same
    child_id = str(workflow.uuid4())
    delegation = Delegation(
        caller=edge.from_, to=edge.to, message=message, task_id=child_id, task=edge.task
    )
    context.delegations.append(delegation)
    await context.write_events(
        *leading,
        EventDraft(
            type=EventType.tool_run_started,
            data={
                "call_id": call.id,
                "tool": call.name,
                "delegation": True,
                "task_id": child_id,
                "node": edge.to,
                "task": edge.task.value,
            },
            key=f"started:{call.id}",
        ),
    )
    try:
        result: AgentTaskResult = await workflow.execute_child_workflow(
            AGENT_TASK_WORKFLOW,
            AgentTaskInput(
                task_id=child_id,
                project_id=task.project_id,
                agent_id=target.agent_id,
                message=message,
                user_group_id=task.user_group_id,
                params=context.params,
                parent_task_id=context.task_id,
                node=edge.to,
                workforce=task.workforce,
                single_turn=True,
                delegation_depth=task.delegation_depth + 1,
                workforce_id=task.workforce_id,
                conversation_of=context.task_id if same else None,
                seconds_per_message=task.seconds_per_message,
                tool_run_seconds=task.tool_run_seconds,
            ),
            id=task_workflow_id(child_id),
            result_type=AgentTaskResult,
            static_summary=f"delegation to {edge.to}" + (" (same conversation)" if same else ""),
            search_attributes=run_search_attributes(
                project_id=task.project_id,
                kind="agent-task",
                status=TaskStatus.queued.value,
                agent_id=target.agent_id,
                workforce_id=task.workforce_id,
            ),
            # A caller that ends any other way than by its own cancel still cancels the
            # child, which then records its task as cancelled.
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
        )
    except ChildWorkflowError as exc:
        reraise_cancel(exc)
        return tool_failed(call, _reason(exc))
    # The child's own delegations follow this one (others may have started meanwhile).
    after = context.delegations.index(delegation) + 1
    context.delegations[after:after] = result.delegations
    if result.status is not TaskStatus.completed:
        return tool_failed(call, result.error or result.status.value)
    return _completed(call, as_text(result.answer or ""), task_id=child_id)


# MCP servers: the tools listed when the task began, each call an activity.


def _mcp_tools(
    task: AgentTaskInput, agent: AgentSpec, tools: dict[str, ToolSpec]
) -> list[CallableTool]:
    found: list[CallableTool] = []
    for offer in task.mcp_tools or []:
        # The first attachment that offers it says how it is approved.
        attached = next(
            (
                attached
                for attached in agent.mcp
                if attached.integration == offer.integration
                and (attached.tools is None or offer.tool in attached.tools)
            ),
            None,
        )
        if attached is None:
            continue
        schema = dict(offer.input_schema) or {"type": "object", "properties": {}}
        schema.setdefault("properties", {})
        definition = ToolDefinition(
            name=tool_function_name(f"{offer.integration}_{offer.tool}"),
            description=offer.description,
            parameters=_offered(schema, attached.approval),
        )
        policy = AgentTool(
            tool_id=f"mcp:{offer.integration}.{offer.tool}",
            approval=attached.approval,
            max_auto_runs=attached.max_auto_runs,
        )
        found.append(CallableTool(definition=definition, policy=policy, run=_mcp_runner(offer)))
    return found


def _mcp_runner(offer: McpToolOffer) -> Runner:
    async def run(
        context: TaskContext, call: ToolCall, arguments: dict[str, Any], leading: list[EventDraft]
    ) -> Outcome:
        return await call_mcp_tool(context, call, offer, arguments, leading)

    return run


async def call_mcp_tool(
    context: TaskContext,
    call: ToolCall,
    offer: McpToolOffer,
    arguments: dict[str, Any],
    leading: list[EventDraft],
) -> Outcome:
    await context.write_events(
        *leading,
        EventDraft(
            type=EventType.tool_run_started,
            data={"call_id": call.id, "tool": call.name, "mcp": offer.integration},
            key=f"started:{call.id}",
        ),
    )
    try:
        outcome: McpToolOutcome = await workflow.execute_activity(
            activity_names.MCP_CALL,
            McpToolCall(
                project_id=context.input.project_id,
                integration=offer.integration,
                tool=offer.tool,
                arguments=arguments,
            ),
            result_type=McpToolOutcome,
            start_to_close_timeout=policies.MCP_CALL_TIMEOUT,
            heartbeat_timeout=policies.MCP_HEARTBEAT_TIMEOUT,
            retry_policy=policies.MCP_RETRY,
            summary=f"mcp {offer.integration}.{offer.tool}",
        )
    except ActivityError as exc:
        reraise_cancel(exc)
        failure: BaseException = exc.cause or exc
        reason = failure.message if isinstance(failure, FailureError) else str(failure)
        return tool_failed(call, reason)
    if outcome.error is not None:
        return tool_failed(call, outcome.error)
    return _completed(call, as_text(outcome.output))


SOURCES: tuple[Source, ...] = (_delegations, _project_tools, _mcp_tools)


# What a call's end looks like


def _completed(call: ToolCall, output: str, **extra: Any) -> Outcome:
    completed = EventDraft(
        type=EventType.tool_run_completed,
        data={"call_id": call.id, "tool": call.name, "output": output[:2000], **extra},
        key=f"completed:{call.id}",
    )
    return output, completed


def tool_failed(call: ToolCall, error: str) -> tuple[str, EventDraft]:
    failed = EventDraft(
        type=EventType.tool_run_failed,
        data={"call_id": call.id, "tool": call.name, "error": error},
        key=f"failed:{call.id}",
    )
    return f"Error: the tool {call.name} failed: {error}", failed


def _reason(exc: ChildWorkflowError) -> str:
    """Why a child failed, under the wrappers: a child whose activity failed says why the
    activity did."""
    failure: BaseException = exc
    while isinstance(failure, ChildWorkflowError | ActivityError) and failure.cause is not None:
        failure = failure.cause
    return failure.message if isinstance(failure, FailureError) else str(failure)


def as_text(output: Any) -> str:
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    return text[:MAX_TOOL_RESULT_CHARS]


def reraise_cancel(exc: ActivityError | ChildWorkflowError) -> None:
    """A child or activity that ended because this task was cancelled cancels the task."""
    if isinstance(exc.cause, CancelledError):
        raise asyncio.CancelledError() from exc
