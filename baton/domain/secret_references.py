"""Where a template may read a project secret, checked on its parsed tree when a definition
is saved.

A secret may leave Baton but never come back. So it is read only as a bare
`{{ secrets.<name> }}`, as it is, in a field that sends it out (an http step's url, query,
headers and body). Anything that could change its form on the way (a filter, a test, an
operator, a call, a condition, a loop, a `set`, a macro, a filter or call block) would also
slip it past the scrubbing of outputs, so it is refused; so is every other field, where the
value would end up in a prompt, an output, a condition or a row."""

from __future__ import annotations

from collections.abc import Iterator

from jinja2 import nodes

SECRETS = "secrets"
NOT_HERE = (
    "secrets can only be used in an http step's url, query, headers or body, "
    "as a bare {{ secrets.<name> }}"
)

# What may enclose a secret's `{{ }}`: the template itself, and an `{% if %}` body (which
# only decides whether the value is sent, never changes it).
_PASSIVE = (nodes.Template, nodes.If)

_WHAT: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Filter, "filtered"),
    (nodes.Test, "tested"),
    (nodes.Call, "passed to or called as a function"),
    (nodes.Getattr, "read further (an attribute)"),
    (nodes.Getitem, "read further (an item)"),
    (nodes.Compare, "used in a condition"),
    (nodes.CondExpr, "used in a condition"),
    (nodes.If, "used in a condition"),
    (nodes.Not, "used in a condition"),
    (nodes.And, "used in a condition"),
    (nodes.Or, "used in a condition"),
    (nodes.Concat, "concatenated"),
    (nodes.BinExpr, "combined with an operator"),
    (nodes.UnaryExpr, "combined with an operator"),
    (nodes.For, "used in a loop"),
    (nodes.Assign, "assigned with set"),
    (nodes.AssignBlock, "captured by a set block"),
    (nodes.Macro, "used in a macro"),
    (nodes.CallBlock, "used in a call block"),
    (nodes.FilterBlock, "used in a filter block"),
    (nodes.Block, "used in a block"),
    (nodes.With, "used in a with block"),
    (nodes.ScopedEvalContextModifier, "used in an autoescape block"),
)


def reads_secrets(tree: nodes.Template) -> bool:
    return any(name.name == SECRETS for name in tree.find_all(nodes.Name))


def secret_problems(tree: nodes.Template, *, may_send: bool) -> list[str]:
    """Why this template may not read the secrets it reads (nothing when it may).
    `may_send`: whether the field sends its value out of Baton."""
    if not may_send:
        return [NOT_HERE] if reads_secrets(tree) else []
    return sorted(set(_misuses(tree, ())))


def _misuses(node: nodes.Node, enclosing: tuple[nodes.Node, ...]) -> Iterator[str]:
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Name) and child.name == SECRETS:
            yield "secrets must be read by name, as a bare {{ secrets.<name> }}"
        elif (name := _secret_name(child)) is not None:
            culprit = _culprit(node, enclosing)
            if culprit is not None:
                yield (
                    f"secrets.{name} is {_what(culprit)}: a secret can only be used as a bare "
                    f"{{{{ secrets.{name} }}}}"
                )
        else:
            yield from _misuses(child, (*enclosing, node))


def _secret_name(node: nodes.Node) -> str | None:
    """`name` when `node` is `secrets.name` or `secrets["name"]`."""
    if isinstance(node, nodes.Getattr):
        target, name = node.node, node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        target, name = node.node, node.arg.value
    else:
        return None
    if isinstance(target, nodes.Name) and target.name == SECRETS and isinstance(name, str):
        return name
    return None


def _culprit(parent: nodes.Node, enclosing: tuple[nodes.Node, ...]) -> nodes.Node | None:
    """What makes a secret reference not bare: its parent when that is not a `{{ }}`, else
    the innermost statement around it that is not passive."""
    if not isinstance(parent, nodes.Output):
        return parent
    return next((n for n in reversed(enclosing) if not isinstance(n, _PASSIVE)), None)


def _what(node: nodes.Node) -> str:
    return next(
        (what for kind, what in _WHAT if isinstance(node, kind)),
        f"used inside {type(node).__name__}",
    )
