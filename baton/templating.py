"""Templates in tools and prompts: a sandboxed Jinja environment.

`{{ params.x }}`, `{{ steps.<name>.output }}`, `{{ foreach.item }}`, `{{ secrets.<name> }}`
(resolved inside activities only). A template that is a single `{{ expression }}` keeps the
expression's type (a list stays a list), so steps can hand structured data to each other;
anything else renders to text. Rendering is pure and deterministic, which is why workflows
may render pure steps themselves instead of paying for an activity."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class _Environment(ImmutableSandboxedEnvironment):
    """Keys win over attributes: `params.items` is the param named items, not dict.items."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_env = _Environment(undefined=StrictUndefined, autoescape=False)
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class TemplateError(ValueError):
    """A template that does not parse, or fails when rendered; the message says where."""


@dataclass(frozen=True)
class References:
    """The `namespace.name` pairs a template reads, such as ("steps", "fetch")."""

    names: frozenset[tuple[str, str]]

    def roots(self) -> set[str]:
        return {root for root, _ in self.names}

    def of(self, namespace: str) -> set[str]:
        return {name for root, name in self.names if root == namespace}


def parse(template: str) -> nodes.Template:
    try:
        return _env.parse(template)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc


@lru_cache(maxsize=2048)
def references(template: str) -> References:
    tree = parse(template)
    pairs: set[tuple[str, str]] = set()
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name):
            pairs.add((node.node.name, node.attr))
    for sub in tree.find_all(nodes.Getitem):
        if isinstance(sub.node, nodes.Name) and isinstance(sub.arg, nodes.Const):
            pairs.add((sub.node.name, str(sub.arg.value)))
    return References(names=frozenset(pairs))


@lru_cache(maxsize=2048)
def _template(source: str) -> Template:
    return _env.from_string(source)


@lru_cache(maxsize=2048)
def _expression(source: str) -> TemplateExpression:
    return _env.compile_expression(source, undefined_to_none=False)


def render(template: str, context: dict[str, Any]) -> Any:
    """Renders `template`; a lone `{{ expression }}` returns the expression's value itself."""
    try:
        single = _SINGLE_EXPRESSION.match(template)
        if single and "{{" not in single.group("expr") and "{%" not in template:
            value = _expression(single.group("expr").strip())(**context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return value
        return _template(template).render(**context)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc
    except UndefinedError as exc:
        raise TemplateError(f"{exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"not allowed in a template: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc


def render_text(template: str, context: dict[str, Any]) -> str:
    value = render(template, context)
    return value if isinstance(value, str) else _to_text(value)


def render_tree(value: Any, context: dict[str, Any]) -> Any:
    """Renders every string inside a JSON-like value (headers, bodies, parameter maps)."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, dict):
        return {key: render_tree(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_tree(item, context) for item in value]
    return value


def truthy(template: str, context: dict[str, Any]) -> bool:
    """An `if` condition: a bare expression (`steps.a.output.ok`) or a `{{ ... }}` template."""
    expression = template if "{{" in template else "{{ " + template + " }}"
    value = render(expression, context)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
