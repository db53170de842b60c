"""Tasks: statuses, messages, and the payloads that cross the workflow/activity boundary."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from baton.domain.agents import AgentMcp, AgentSpec
from baton.domain.events import EventDraft

# The LLM vocabulary lives in baton.domain.llm; these names stay importable from here.
from baton.domain.llm import LlmRequest as LlmRequest
from baton.domain.llm import LlmResponse as LlmResponse
from baton.domain.llm import Message as Message
from baton.domain.llm import MessageRole as MessageRole
from baton.domain.llm import TokenUsage as TokenUsage
from baton.domain.tool_runs import NewToolRun
from baton.domain.tools import ToolSpec
from baton.domain.workforces import DelegateTask, WorkforceSpec


class TaskStatus(StrEnum):
    queued = "queued"
    running = "running"
    waiting_approval = "waiting-approval"
    idle = "idle"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed-out"
    # Paused: a model call its organisation cannot pay for waits for credits to arrive.
    out_of_credits = "out-of-credits"
    # A workforce task: a node failed and waits for a person's message to run again.
    escalated = "escalated"
    # A workforce task that ran its `max_node_runs`.
    execution_limit_reached = "execution-limit-reached"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


# How deep delegations may nest (an agent asking an agent asking an agent...): a delegate
# tool called deeper than this is refused as a tool error, so a graph whose agents delegate
# in a circle cannot recurse for ever.
MAX_DELEGATION_DEPTH = 5

_FINAL = frozenset(
    {
        TaskStatus.completed,
        TaskStatus.failed,
        TaskStatus.cancelled,
        TaskStatus.timed_out,
        TaskStatus.execution_limit_reached,
    }
)


def task_workflow_id(task_id: str) -> str:
    """The workflow id of a task the API or another task started (a schedule's runs have
    ids of their own)."""
    return f"task-{task_id}"


class McpToolOffer(BaseModel):
    """A tool of an MCP server as a task's model is offered it."""

    integration: str
    tool: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)


class ListMcpTools(BaseModel):
    project_id: str
    attachments: list[AgentMcp]


class McpToolList(BaseModel):
    tools: list[McpToolOffer] = Field(default_factory=list)
    # The servers that could not be listed, each with why: their tools are not offered.
    unavailable: list[str] = Field(default_factory=list)


class McpToolCall(BaseModel):
    project_id: str
    integration: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class McpToolOutcome(BaseModel):
    """The call's output (structured content, else text), or the server's error text."""

    output: Any = None
    error: str | None = None


# The pending approval a task asks for when it has spent its agent's budget.
BUDGET_APPROVAL = "budget"


class TaskSpend(BaseModel):
    """What a task has spent, as its workflow counts it (carried across continue-as-new),
    and how many times a person let it go past its budget."""

    vendor_micros: int = 0
    actions: int = 0
    budget_raises: int = 0

    def over_budget(self, agent: AgentSpec) -> dict[str, Any] | None:
        """What the task spent against its budget (each approval allows as much again), when
        it has reached it; None while it may go on."""
        allowed = self.budget_raises + 1
        reached: dict[str, Any] = {}
        if agent.max_credits_per_task is not None:
            budget = agent.max_credits_per_task * allowed
            spent = self.vendor_micros / 1_000_000
            if spent >= budget:
                reached.update(vendor_credits_spent=spent, max_credits=budget)
        if agent.max_actions_per_task is not None:
            budget_actions = agent.max_actions_per_task * allowed
            if self.actions >= budget_actions:
                reached.update(actions_spent=self.actions, max_actions=budget_actions)
        return reached or None


class AgentTaskInput(BaseModel):
    """How a task starts. An empty `task_id` (a scheduled start) makes the workflow create
    its own task; an absent `agent` is loaded at start. Fields are only ever added, with
    defaults: histories already recorded must still replay."""

    task_id: str
    project_id: str
    agent_id: str
    agent: AgentSpec | None = None
    message: str
    user_group_id: str | None = None
    # Carried over by continue-as-new.
    transcript: list[Message] = Field(default_factory=list)
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    started_at: datetime | None = None
    auto_runs: dict[str, int] = Field(default_factory=dict)
    # The agent's typed params, validated and with defaults applied before the start.
    params: dict[str, Any] = Field(default_factory=dict)
    # Carried over by continue-as-new, like `tools`.
    snippets: dict[str, str] = Field(default_factory=dict)
    knowledge_prompt: str = ""
    # Follow-ups accepted and not yet answered when the run continued as new.
    inbox: list[str] = Field(default_factory=list)
    # Carried over by continue-as-new instead of `transcript` (which stays empty) since the
    # transcript is read from the database: how many messages it has, and the last answer.
    message_count: int = 0
    answer: str = ""
    # A task that works for another: a workforce task, or an agent task that delegated to it.
    parent_task_id: str | None = None
    # The workforce node it runs, and the workforce graph its parent pinned: with `node`, the
    # graph gives the agent its delegate tools (`spec.delegates(node)`).
    node: str | None = None
    workforce: WorkforceSpec | None = None
    # A node run: answers once and completes, whatever the agent's idle timeout.
    single_turn: bool = False
    # How many delegations led to this task: beyond `MAX_DELEGATION_DEPTH` it may not delegate.
    delegation_depth: int = 0
    # The workforce whose task this works for: every run under that task carries it as the
    # `BatonWorkforce` search attribute, so one query lists the whole tree.
    workforce_id: str | None = None
    # The MCP tools the agent is offered, listed when the task began (None: not yet).
    mcp_tools: list[McpToolOffer] | None = None
    # Carried over by continue-as-new: what the task has spent against its agent's budget.
    spend: TaskSpend | None = None
    # A `task: same` delegation: the task whose conversation this one continues (its
    # messages so far come before `message`, as the task's first message).
    conversation_of: str | None = None
    # From the organisation's plan when the task started, carried by continue-as-new and to
    # the runs it starts; None: no limit (tasks started before plans had them). How long the
    # agent may work on one user message, and how long each of its tool runs may take.
    seconds_per_message: int | None = None
    tool_run_seconds: int | None = None


class Delegation(BaseModel):
    """A delegation a task made (or one made under it, by the tasks it delegated to), as
    its workforce task shows it: the node that asked, the node asked, what it was asked, and
    the task the asked node worked in."""

    caller: str
    to: str
    message: str
    task_id: str
    # `same`: the asked node continued the caller's conversation.
    task: DelegateTask = DelegateTask.new


class AgentTaskResult(BaseModel):
    status: TaskStatus
    answer: str | None = None
    error: str | None = None
    # A node run's delegations, in the order they started, each followed by those it made.
    delegations: list[Delegation] = Field(default_factory=list)


class BeginTask(BaseModel):
    task_id: str
    workflow_id: str
    project_id: str
    agent_id: str
    message: str
    user_group_id: str | None = None
    load_agent: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    parent_task_id: str | None = None
    node: str | None = None
    conversation_of: str | None = None
    # The workflow can wait for capacity: the organisation's concurrency quota applies
    # (False for runs that began before the quota existed).
    admit: bool = False


class BegunTask(BaseModel):
    agent: AgentSpec | None = None
    # The agent's tools and every tool they call, pinned for the whole task.
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    # The snippets the agent and its tools read, and the rows of its prompt-mode knowledge.
    snippets: dict[str, str] = Field(default_factory=dict)
    knowledge_prompt: str = ""
    # A task with a parent: the params its own agent starts with (None: those it was given).
    params: dict[str, Any] | None = None
    # Over its organisation's concurrency quota: the task waits in `queued` until admitted.
    waiting_for_capacity: bool = False
    # The time limits of the organisation's plan as the task began, for a task started without
    # them (a schedule's, a workforce node's); None: no limit, or begun before they were read.
    seconds_per_message: int | None = None
    tool_run_seconds: int | None = None


class TaskStatusUpdate(BaseModel):
    task_id: str
    status: TaskStatus
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class TaskMessageAppend(BaseModel):
    """`seq` is the message's place in the transcript, chosen by the workflow, so an activity
    retried after a crash writes the same row again instead of a second one."""

    task_id: str
    seq: int
    message: Message
    usage: TokenUsage | None = None
    # The model that answered (`provider:name`), kept with the usage so a task's cost can
    # name each call's model; None for appends written before it was.
    model: str | None = None
    # Events that belong just before the message (a tool call's end before its result).
    events: list[EventDraft] = Field(default_factory=list)


class LlmCall(BaseModel):
    """An LLM call of a task: its text streams into the task's events as it arrives.

    With `seq` set, the conversation is not in `request.messages` (left empty) but in the
    database: the activity first writes `writes` and `status`, reads messages 0 to `seq - 1`,
    puts `system_prompt` before them, and writes its answer as message `seq` (with its usage,
    and the `idle` status after a text answer when `idle_after_answer`). Without `seq` (a run
    recorded before), `request.messages` is the whole conversation and nothing is written."""

    task_id: str
    request: LlmRequest
    # Unique per call in the task, so a retried call's deltas are not recorded twice.
    stream_key: str
    # Where the activity finds the provider's key: never the key itself.
    project_id: str | None = None
    integration: str | None = None
    seq: int | None = None
    system_prompt: str = ""
    writes: list[TaskMessageAppend] = Field(default_factory=list)
    status: TaskStatus | None = None
    idle_after_answer: bool = False


class TaskRecord(BaseModel):
    """The workflow's own writes to a task's projection, in one local activity: new tool
    runs, events, messages (each after its own events), then the status."""

    task_id: str
    tool_runs: list[NewToolRun] = Field(default_factory=list)
    events: list[EventDraft] = Field(default_factory=list)
    messages: list[TaskMessageAppend] = Field(default_factory=list)
    status: TaskStatusUpdate | None = None


class UserMessage(BaseModel):
    content: str = Field(min_length=1, max_length=100_000)


class Decision(BaseModel):
    call_id: str
    approve: bool
    arguments: dict[str, Any] | None = None
    reason: str = ""


class PendingApproval(BaseModel):
    call_id: str
    tool: str
    arguments: dict[str, Any]
    # What a person is asked, when it is not a tool call ("budget reached: go on?").
    question: str | None = None


class TaskState(BaseModel):
    status: TaskStatus
    pending_approvals: list[PendingApproval] = Field(default_factory=list)
    queued_messages: int = 0
    iterations: int = 0


# How much of a conversation a `task: same` delegation reads (its latest part).
CONTINUED_CONVERSATION_CHARS = 20_000


def continued_conversation(messages: list[Message], caller: str, request: str) -> str:
    """The first message of a task that continues `caller`'s conversation: what was said so
    far (its latest part, tool calls and results included), then what it is asked."""
    lines: list[str] = []
    for message in messages:
        if message.role is MessageRole.user:
            lines.append(f"user: {message.content}")
        elif message.role is MessageRole.assistant:
            if message.content:
                lines.append(f"{caller}: {message.content}")
            lines.extend(
                f"{caller} called {call.name} {json.dumps(call.arguments)}"
                for call in message.tool_calls
            )
        elif message.role is MessageRole.tool:
            lines.append(f"result of {message.name or 'a tool'}: {message.content}")
    so_far = "\n".join(lines)
    if len(so_far) > CONTINUED_CONVERSATION_CHARS:
        so_far = "…" + so_far[-CONTINUED_CONVERSATION_CHARS:]
    return (
        f"You continue a conversation {caller} was having.\n\n"
        f"The conversation so far:\n{so_far}\n\n"
        f"{caller} asks you:\n{request}"
    )
