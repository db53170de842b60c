"""What a workforce is: a graph of agents, tools and conditions a task flows through.

A task's first message goes to the `entry` node. An `agent` node runs a turn of its agent; a
`tool` node runs a project tool on the output before it, with no model in between; a
`condition` node picks the next node by rules over that output (or by a model). Edges are
one-way: a `handover` edge passes the work on when its source finishes; a `delegate` edge
gives its source agent a tool (`ask_<target>`) that puts the target to work and brings back
its answer. The definition holds no secret (a tool node's params may not read one), so it may
travel in workflow history, and its rules are pure functions a workflow may call: numbers
compare as numbers even when written as text, and text compares without regard to case but
for `equals`."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from baton import templating
from baton.domain.agents import Approval, tool_function_name
from baton.domain.models import ModelRef
from baton.domain.tools import IDENTIFIER
from baton.errors import InvalidInput

DEFAULT_MAX_NODE_RUNS = 100
NAME_MAX_LENGTH = 200
DELEGATE_TOOL_PREFIX = "ask_"


class NodeType(StrEnum):
    agent = "agent"
    tool = "tool"
    condition = "condition"


class EdgeKind(StrEnum):
    handover = "handover"  # "next step": the work always goes on to the target
    delegate = "delegate"  # "AI connection": the source may call the target as a tool


class DelegateTask(StrEnum):
    new = "new"  # the target works in a task of its own (a child workflow)
    same = "same"  # the target continues in the caller's conversation, one at a time


class OnFailure(StrEnum):
    terminate = "terminate"  # the task fails
    escalate = "escalate"  # the task waits for a person (`escalated`), resumed by a message


class RuleOp(StrEnum):
    equals = "equals"
    contains = "contains"
    starts_with = "starts_with"
    ends_with = "ends_with"
    exists = "exists"
    empty = "empty"
    gt = "gt"
    lt = "lt"
    gte = "gte"
    lte = "lte"


VALUELESS_OPS = {RuleOp.exists, RuleOp.empty}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        default="",
        max_length=200,
        description="A dotted path into the previous node's output (`order.items.0.sku`; an "
        "answer that is JSON text is read as JSON); empty: the whole output",
    )
    op: RuleOp
    value: Any = None


class Branch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=IDENTIFIER, description="The node this branch leads to")
    match: Literal["all", "any"] = "all"
    rules: list[Rule] = Field(default_factory=list, max_length=50)
    label: str = Field(
        default="", max_length=200, description="What a model condition reads to pick it"
    )


class NodeBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=IDENTIFIER)


class AgentNode(NodeBase):
    type: Literal["agent"] = "agent"
    agent_id: str
    retries: int = Field(default=0, ge=0, le=10, description="Runs again after a failure")
    on_failure: OnFailure = OnFailure.terminate


class ToolNode(NodeBase):
    type: Literal["tool"] = "tool"
    tool_id: str
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The tool's params; templates read {{ input }} (the previous node's "
        "output), {{ message }} (the task's message) and {{ params.<name> }}",
    )


class ConditionNode(NodeBase):
    type: Literal["condition"] = "condition"
    mode: Literal["rules", "model"] = "rules"
    branches: list[Branch] = Field(min_length=1, max_length=50)
    default: str | None = Field(
        default=None, pattern=IDENTIFIER, description="Where the work goes when no branch fits"
    )
    model: ModelRef | None = Field(default=None, description="A model condition's model")
    prompt: str = Field(
        default="", max_length=20_000, description="A model condition's instructions"
    )


Node = Annotated[AgentNode | ToolNode | ConditionNode, Field(discriminator="type")]


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", pattern=IDENTIFIER)
    to: str = Field(pattern=IDENTIFIER)
    kind: EdgeKind = EdgeKind.handover
    when: str = Field(
        default="",
        max_length=2000,
        description="A delegate edge: when the source should call the target (the tool's "
        "description)",
    )
    approval: Approval = Approval.auto
    max_auto_runs: int | None = Field(
        default=None, ge=0, description="After this many automatic delegations, ask a person"
    )
    task: DelegateTask = Field(
        default=DelegateTask.new,
        description="A delegate edge: `new`, the target works in a task of its own (several "
        "may run at once); `same`, it continues the caller's conversation, reading what was "
        "said so far (one at a time)",
    )


class WorkforceSpec(BaseModel):
    """The part of a workforce a task pins when it starts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    description: str = Field(default="", max_length=2000)
    nodes: list[Node] = Field(min_length=1, max_length=200)
    edges: list[Edge] = Field(default_factory=list, max_length=1000)
    entry: str = Field(pattern=IDENTIFIER)
    max_node_runs: int = Field(
        default=DEFAULT_MAX_NODE_RUNS,
        ge=1,
        le=10_000,
        description="Node runs per task; reaching it ends the task execution-limit-reached",
    )
    idle_timeout_seconds: float = Field(
        default=0,
        ge=0,
        le=30 * 24 * 3600,
        description="How long a task waits for a follow-up after the graph is done; 0 "
        "completes at once",
    )

    def node(self, node_id: str) -> AgentNode | ToolNode | ConditionNode:
        return next(n for n in self.nodes if n.id == node_id)

    def handover_targets(self, node_id: str) -> list[str]:
        return [e.to for e in self.edges if e.from_ == node_id and e.kind is EdgeKind.handover]

    def delegates(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.from_ == node_id and e.kind is EdgeKind.delegate]


def delegate_tool_name(target: str) -> str:
    """The tool a delegate edge gives its source: `ask_<target node id>`."""
    return tool_function_name(f"{DELEGATE_TOOL_PREFIX}{target}")


def check_graph(spec: WorkforceSpec) -> None:
    """Refuses a graph that cannot run: a duplicate node, an edge or branch to nowhere, a
    delegate edge from a node that is not an agent,
    a handover edge from a condition (its branches route it), two edges the same way between
    two nodes, a condition without a default, a tool node's param template that does not parse
    or reads what it cannot see, a node the entry cannot reach. Each error names what is
    wrong."""
    ids: set[str] = set()
    for index, node in enumerate(spec.nodes):
        if node.id in ids:
            _refuse(f"nodes[{index}].id", f"two nodes are named {node.id!r}")
        ids.add(node.id)
    if spec.entry not in ids:
        _refuse("entry", f"the entry {spec.entry!r} is not a node")
    seen_edges: set[tuple[str, str, EdgeKind]] = set()
    delegate_tools: set[tuple[str, str]] = set()
    for index, edge in enumerate(spec.edges):
        for end in (edge.from_, edge.to):
            if end not in ids:
                _refuse(f"edges[{index}]", f"edge {edge.from_}->{edge.to}: no node {end!r}")
        if edge.kind is EdgeKind.delegate and spec.node(edge.from_).type != NodeType.agent:
            _refuse(
                f"edges[{index}]",
                f"edge {edge.from_}->{edge.to}: only an agent node can delegate",
            )
        if edge.kind is EdgeKind.delegate and spec.node(edge.to).type != NodeType.agent:
            _refuse(
                f"edges[{index}]",
                f"edge {edge.from_}->{edge.to}: a delegation goes to an agent node",
            )
        if edge.kind is EdgeKind.handover and spec.node(edge.from_).type == NodeType.condition:
            _refuse(
                f"edges[{index}]",
                f"edge {edge.from_}->{edge.to}: a condition sends the work on by its branches "
                "and default, not by edges; make this a branch",
            )
        if (edge.from_, edge.to, edge.kind) in seen_edges:
            _refuse(
                f"edges[{index}]",
                f"edge {edge.from_}->{edge.to}: a second {edge.kind.value} edge the same way",
            )
        seen_edges.add((edge.from_, edge.to, edge.kind))
        if edge.kind is EdgeKind.delegate:
            tool = (edge.from_, delegate_tool_name(edge.to))
            if tool in delegate_tools:
                _refuse(
                    f"edges[{index}]",
                    f"edge {edge.from_}->{edge.to}: {edge.from_!r} already has a tool named "
                    f"{tool[1]!r} for another delegation; rename one of the nodes",
                )
            delegate_tools.add(tool)
    for index, node in enumerate(spec.nodes):
        if isinstance(node, ToolNode):
            _check_param_templates(index, node)
        if not isinstance(node, ConditionNode):
            continue
        if node.default is None:
            _refuse(f"nodes[{index}].default", f"condition {node.id!r} has no default branch")
        for target in [*(b.to for b in node.branches), node.default]:
            if target not in ids:
                _refuse(f"nodes[{index}]", f"condition {node.id!r}: no node {target!r}")
        if node.mode == "model" and node.model is None:
            _refuse(f"nodes[{index}].model", f"condition {node.id!r} needs a model")
        for branch_index, branch in enumerate(node.branches):
            if node.mode == "rules" and not branch.rules:
                _refuse(
                    f"nodes[{index}].branches[{branch_index}].rules",
                    f"condition {node.id!r}: the branch to {branch.to!r} has no rules, so it "
                    "could never be taken",
                )
            for rule in branch.rules:
                if rule.op not in VALUELESS_OPS and rule.value is None:
                    _refuse(
                        f"nodes[{index}].branches[{branch_index}]",
                        f"condition {node.id!r}: rule {rule.op.value} needs a value",
                    )
    reached = _reachable(spec)
    for index, node in enumerate(spec.nodes):
        if node.id not in reached:
            _refuse(f"nodes[{index}]", f"node {node.id!r} cannot be reached from the entry")


def next_nodes(node: AgentNode | ToolNode | ConditionNode, spec: WorkforceSpec) -> list[str]:
    """Where the work can go after a node: its handover targets, or a condition's branches."""
    if isinstance(node, ConditionNode):
        return [*(b.to for b in node.branches), *([node.default] if node.default else [])]
    return spec.handover_targets(node.id)


def _reachable(spec: WorkforceSpec) -> set[str]:
    seen = {spec.entry}
    frontier = [spec.entry]
    while frontier:
        node = spec.node(frontier.pop())
        targets = next_nodes(node, spec) + [e.to for e in spec.delegates(node.id)]
        for target in targets:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


# What a tool node's param templates may read (see `ToolNode.params`).
TOOL_NODE_CONTEXT = frozenset({"input", "message", "params"})


def _check_param_templates(index: int, node: ToolNode) -> None:
    for name, value in node.params.items():
        if not isinstance(value, str) or not templating.is_template(value):
            continue
        field = f"nodes[{index}].params.{name}"
        try:
            roots = templating.references(value).roots()
        except templating.TemplateError as exc:
            _refuse(field, f"tool node {node.id!r}, param {name!r}: {exc}")
        if "secrets" in roots:
            _refuse(
                field,
                f"tool node {node.id!r}, param {name!r}: reads a secret; the tool's own steps "
                "read secrets, its params never do",
            )
        unknown = sorted(roots - TOOL_NODE_CONTEXT)
        if unknown:
            _refuse(
                field,
                f"tool node {node.id!r}, param {name!r}: reads {unknown[0]}, which is not "
                f"there; a param reads {', '.join(sorted(TOOL_NODE_CONTEXT))}",
            )


def _refuse(field: str, message: str) -> NoReturn:
    raise InvalidInput(message, details=[{"field": field, "message": message}])


# Rules: pure, so the workflow evaluates them itself.


def pick_branch(node: ConditionNode, output: Any) -> str:
    """The first branch whose rules hold for `output`, else the default."""
    for branch in node.branches:
        results = [rule_holds(rule, output) for rule in branch.rules]
        if results and (all(results) if branch.match == "all" else any(results)):
            return branch.to
    assert node.default is not None  # check_graph refuses a condition without one
    return node.default


_MISSING = object()


def rule_holds(rule: Rule, output: Any) -> bool:
    value = _lookup(output, rule.field)
    if rule.op is RuleOp.exists:
        return value is not _MISSING and value is not None
    if rule.op is RuleOp.empty:
        if isinstance(value, str):
            return not value.strip()
        return value is _MISSING or value in (None, [], {})
    if value is _MISSING or value is None:
        return False
    if rule.op in (RuleOp.gt, RuleOp.lt, RuleOp.gte, RuleOp.lte):
        left, right = _number(value), _number(rule.value)
        if left is None or right is None:
            return False
        return {
            RuleOp.gt: left > right,
            RuleOp.lt: left < right,
            RuleOp.gte: left >= right,
            RuleOp.lte: left <= right,
        }[rule.op]
    if rule.op is RuleOp.equals:
        return _same(value, rule.value)
    if rule.op is RuleOp.contains:
        if isinstance(value, list):
            return any(_same(item, rule.value) for item in value)
        return _text(rule.value).lower() in _text(value).lower()
    if rule.op is RuleOp.starts_with:
        return _text(value).lower().startswith(_text(rule.value).lower())
    return _text(value).lower().endswith(_text(rule.value).lower())


def _lookup(output: Any, path: str) -> Any:
    """`a.b.0.c` in `output`; text on the way is read as JSON when it is JSON (an agent's
    answer is text, and it may well be a JSON object)."""
    if not path:
        return output
    current = output
    for part in path.split("."):
        if isinstance(current, str):
            current = _json_or_missing(current)
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _same(left: Any, right: Any) -> bool:
    """Equal as numbers when both read as one (`"5"`, `5`, `5.0`), else as JSON text."""
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    return left == right or _text(left) == _text(right)


def _json_or_missing(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _MISSING


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    """A value as it reads in JSON (`true`, `null`, `{"a": 1}`), text as it is."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)
