"""A workforce's graph, checked before it is saved, and the rules a condition routes by: pure
functions, so a workflow may run them itself."""

from __future__ import annotations

from typing import Any

import pytest

from baton.domain.workforces import (
    ConditionNode,
    Rule,
    RuleOp,
    WorkforceSpec,
    check_graph,
    delegate_tool_name,
    next_nodes,
    pick_branch,
    rule_holds,
)
from baton.errors import InvalidInput


def agent(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "agent", "agent_id": f"agent-{node_id}"}


def tool(node_id: str, **params: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "tool", "tool_id": f"tool-{node_id}", "params": params}


def condition(node_id: str, **fields: Any) -> dict[str, Any]:
    branches = [{"to": "reply", "rules": [{"field": "ok", "op": "exists"}]}]
    return {"id": node_id, "type": "condition", "branches": branches, "default": "reply", **fields}


def spec_of(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **extra: Any
) -> WorkforceSpec:
    return WorkforceSpec.model_validate(
        {"name": "W", "nodes": nodes, "edges": edges, "entry": nodes[0]["id"], **extra}
    )


def support() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [agent("triage"), agent("billing"), tool("lookup", q="{{ input }}"), condition("route")]
    nodes.append(agent("reply"))
    edges = [
        {"from": "triage", "to": "billing", "kind": "delegate", "when": "invoices"},
        {"from": "triage", "to": "lookup"},
        {"from": "lookup", "to": "route"},
        # A loop back is allowed: the node cap ends it.
        {"from": "reply", "to": "triage"},
    ]
    return nodes, edges


def refusal(spec: WorkforceSpec) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as raised:
        check_graph(spec)
    [detail] = raised.value.details
    assert detail["message"] == raised.value.message
    return detail["field"], raised.value.message


def test_a_graph_that_can_run_passes_and_says_where_work_goes():
    nodes, edges = support()
    spec = spec_of(nodes, edges)
    check_graph(spec)
    assert spec.handover_targets("triage") == ["lookup"]
    assert [e.to for e in spec.delegates("triage")] == ["billing"]
    assert next_nodes(spec.node("route"), spec) == ["reply", "reply"]
    assert next_nodes(spec.node("reply"), spec) == ["triage"]
    assert delegate_tool_name("billing") == "ask_billing"
    assert delegate_tool_name("Billing") == "ask_billing"
    assert spec.max_node_runs == 100 and spec.idle_timeout_seconds == 0


def test_a_node_only_a_delegation_reaches_is_reachable():
    nodes, edges = support()
    check_graph(spec_of(nodes, edges))
    without_delegation = spec_of(nodes, edges[1:])
    assert refusal(without_delegation) == (
        "nodes[1]",
        "node 'billing' cannot be reached from the entry",
    )


GRAPH_REFUSALS: list[tuple[str, Any, str, str]] = [
    (
        "two nodes of one name",
        lambda n, e: ([*n, agent("reply")], e),
        "nodes[5].id",
        "two nodes are named 'reply'",
    ),
    (
        "an edge to nowhere",
        lambda n, e: (n, [*e, {"from": "reply", "to": "ghost"}]),
        "edges[4]",
        "edge reply->ghost: no node 'ghost'",
    ),
    (
        "an edge from nowhere",
        lambda n, e: (n, [*e, {"from": "ghost", "to": "reply"}]),
        "edges[4]",
        "edge ghost->reply: no node 'ghost'",
    ),
    (
        "a delegation from a tool",
        lambda n, e: (n, [*e, {"from": "lookup", "to": "billing", "kind": "delegate"}]),
        "edges[4]",
        "edge lookup->billing: only an agent node can delegate",
    ),
    (
        "a delegation to a condition",
        lambda n, e: (n, [*e, {"from": "triage", "to": "route", "kind": "delegate"}]),
        "edges[4]",
        "edge triage->route: a delegation goes to an agent node",
    ),
    (
        "a handover from a condition",
        lambda n, e: (n, [*e, {"from": "route", "to": "billing"}]),
        "edges[4]",
        "edge route->billing: a condition sends the work on by its branches and default, not "
        "by edges; make this a branch",
    ),
    (
        "a second edge the same way",
        lambda n, e: (n, [*e, {"from": "triage", "to": "lookup", "kind": "handover"}]),
        "edges[4]",
        "edge triage->lookup: a second handover edge the same way",
    ),
    (
        "two delegations whose tools share a name",
        lambda n, e: (
            [*n, agent("Billing")],
            [*e, {"from": "triage", "to": "Billing", "kind": "delegate"}],
        ),
        "edges[4]",
        "edge triage->Billing: 'triage' already has a tool named 'ask_billing' for another "
        "delegation; rename one of the nodes",
    ),
    (
        "a condition without a default",
        lambda n, e: ([*n[:3], {**n[3], "default": None}, n[4]], e),
        "nodes[3].default",
        "condition 'route' has no default branch",
    ),
    (
        "a branch to nowhere",
        lambda n, e: (
            [*n[:3], {**n[3], "branches": [{"to": "ghost", "rules": [{"op": "exists"}]}]}, n[4]],
            e,
        ),
        "nodes[3]",
        "condition 'route': no node 'ghost'",
    ),
    (
        "a default to nowhere",
        lambda n, e: ([*n[:3], {**n[3], "default": "ghost"}, n[4]], e),
        "nodes[3]",
        "condition 'route': no node 'ghost'",
    ),
    (
        "a model condition without a model",
        lambda n, e: ([*n[:3], {**n[3], "mode": "model"}, n[4]], e),
        "nodes[3].model",
        "condition 'route' needs a model",
    ),
    (
        "a rules branch without rules",
        lambda n, e: ([*n[:3], {**n[3], "branches": [{"to": "reply"}]}, n[4]], e),
        "nodes[3].branches[0].rules",
        "condition 'route': the branch to 'reply' has no rules, so it could never be taken",
    ),
    (
        "a rule without its value",
        lambda n, e: (
            [*n[:3], {**n[3], "branches": [{"to": "reply", "rules": [{"op": "gt"}]}]}, n[4]],
            e,
        ),
        "nodes[3].branches[0]",
        "condition 'route': rule gt needs a value",
    ),
    (
        "a tool param template that does not parse",
        lambda n, e: ([*n[:2], tool("lookup", q="{{ input"), *n[3:]], e),
        "nodes[2].params.q",
        "tool node 'lookup', param 'q': line 1: unexpected end of template, expected 'end of "
        "print statement'.",
    ),
    (
        "a tool param that reads a secret",
        lambda n, e: ([*n[:2], tool("lookup", q="{{ secrets.key }}"), *n[3:]], e),
        "nodes[2].params.q",
        "tool node 'lookup', param 'q': reads a secret; the tool's own steps read secrets, its "
        "params never do",
    ),
    (
        "a tool param that reads what a tool node does not have",
        lambda n, e: ([*n[:2], tool("lookup", q="{{ steps.fetch.output }}"), *n[3:]], e),
        "nodes[2].params.q",
        "tool node 'lookup', param 'q': reads steps, which is not there; a param reads input, "
        "message, params",
    ),
    (
        "a node the entry cannot reach",
        lambda n, e: (n, [e[0], e[1], e[3]]),
        "nodes[3]",
        "node 'route' cannot be reached from the entry",
    ),
]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [case[1:] for case in GRAPH_REFUSALS],
    ids=[case[0] for case in GRAPH_REFUSALS],
)
def test_a_graph_that_cannot_run_is_refused_naming_the_field(change: Any, field: str, message: str):
    nodes, edges = change(*support())
    assert refusal(spec_of(nodes, edges)) == (field, message)


def test_an_entry_that_is_not_a_node_is_refused():
    nodes, edges = support()
    assert refusal(spec_of(nodes, edges, entry="ghost")) == (
        "entry",
        "the entry 'ghost' is not a node",
    )


def test_tool_params_may_read_the_input_the_message_and_the_tasks_params():
    nodes, edges = support()
    nodes[2] = tool("lookup", a="{{ input.order.id }}", b="{{ message }}", c="{{ params.x }}", d=3)
    check_graph(spec_of(nodes, edges))


# Rules.

ORDER = {
    "status": "Shipped",
    "total": "42.50",
    "count": 3,
    "paid": True,
    "note": "",
    "blank": "   ",
    "tags": ["vip", 7],
    "items": [{"sku": "A-1", "qty": 2}],
    "nothing": None,
    "meta": {},
}


def holds(op: str, field: str, value: Any = None, output: Any = None) -> bool:
    rule = Rule(field=field, op=RuleOp(op), value=value)
    return rule_holds(rule, ORDER if output is None else output)


RULES: list[tuple[str, str, Any, bool]] = [
    ("equals", "status", "Shipped", True),
    ("equals", "status", "shipped", False),
    ("equals", "count", "3", True),
    ("equals", "count", 3.0, True),
    ("equals", "total", 42.5, True),
    ("equals", "paid", "true", True),
    ("equals", "paid", True, True),
    ("equals", "items.0.sku", "A-1", True),
    ("equals", "items.1.sku", "A-1", False),
    ("equals", "missing", "x", False),
    ("contains", "status", "HIP", True),
    ("contains", "status", "lost", False),
    ("contains", "tags", "vip", True),
    ("contains", "tags", "7", True),
    ("contains", "tags", "vi", False),
    ("starts_with", "status", "ship", True),
    ("starts_with", "status", "ped", False),
    ("ends_with", "items.0.sku", "-1", True),
    ("ends_with", "status", "ship", False),
    ("exists", "status", None, True),
    ("exists", "note", None, True),
    ("exists", "nothing", None, False),
    ("exists", "missing.deeper", None, False),
    ("empty", "note", None, True),
    ("empty", "blank", None, True),
    ("empty", "meta", None, True),
    ("empty", "nothing", None, True),
    ("empty", "missing", None, True),
    ("empty", "count", None, False),
    ("empty", "tags", None, False),
    ("gt", "total", "40", True),
    ("gt", "total", 42.5, False),
    ("gte", "total", "42.5", True),
    ("lt", "count", 10, True),
    ("lt", "items.0.qty", "2", False),
    ("lte", "items.0.qty", "2", True),
    ("gt", "status", 1, False),
    ("gt", "paid", 0, False),
    ("lt", "missing", 1, False),
]


@pytest.mark.parametrize(("op", "field", "value", "expected"), RULES)
def test_each_rule_reads_a_field_of_the_output(op: str, field: str, value: Any, expected: bool):
    assert holds(op, field, value) is expected


def test_a_rule_reads_an_answer_in_json_text_and_the_whole_output_as_text():
    answer = '{"intent": "refund", "amount": "12"}'
    assert holds("equals", "intent", "refund", output=answer)
    assert holds("gt", "amount", 10, output=answer)
    assert holds("contains", "", "REFUND", output=answer)
    assert not holds("exists", "intent", output="not json at all")
    assert holds("contains", "", "urgent", output="This is URGENT")
    assert holds("contains", "", '"sku": "A-1"', output=ORDER)


def route(match: str, rules: list[dict[str, Any]], *more: dict[str, Any]) -> ConditionNode:
    branches = [{"to": "first", "match": match, "rules": rules}, *more]
    return ConditionNode.model_validate(
        {"id": "route", "branches": branches, "default": "fallback"}
    )


def test_all_needs_every_rule_and_any_needs_one():
    rules = [
        {"field": "count", "op": "gt", "value": 1},
        {"field": "paid", "op": "equals", "value": False},
    ]
    assert pick_branch(route("all", rules), ORDER) == "fallback"
    assert pick_branch(route("any", rules), ORDER) == "first"
    assert pick_branch(route("all", rules[:1]), ORDER) == "first"


def test_the_first_branch_that_fits_wins_and_none_fitting_means_the_default():
    second = {"to": "second", "rules": [{"field": "status", "op": "exists"}]}
    missing = [{"field": "nope", "op": "exists"}]
    present = [{"field": "status", "op": "exists"}]
    assert pick_branch(route("all", missing, second), ORDER) == "second"
    assert pick_branch(route("all", present, second), ORDER) == "first"
    assert pick_branch(route("all", missing), ORDER) == "fallback"
    assert pick_branch(route("any", missing), "plain text") == "fallback"
