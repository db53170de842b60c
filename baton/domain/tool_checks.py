"""Save-time validation of a tool: every problem found, each naming the step and the field,
so a 422 tells the author exactly what to fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
from jinja2 import meta
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from baton import templating
from baton.domain.agents import AgentSpec
from baton.domain.secret_references import secret_problems
from baton.domain.tools import (
    LlmStep,
    Step,
    ToolCallStep,
    ToolSpec,
    TransformStep,
    param_json_schema,
)
from baton.errors import InvalidInput
from baton.steps.registry import kind_of

_ROOTS = frozenset({"params", "steps", "foreach", "secrets", "snippets"})
_ROOT_NAMES = "params, steps, foreach, secrets or snippets"


@dataclass(frozen=True)
class Problem:
    step: str | None
    field: str
    message: str

    def as_detail(self) -> dict[str, Any]:
        return {"step": self.step, "field": self.field, "message": self.message}


def template_fields(step: Step) -> list[tuple[str, str]]:
    """(field, template) for every templated field of a step, nested values flattened."""
    fields: list[tuple[str, str]] = []
    for name in ("if_", "foreach"):
        value = getattr(step, name)
        if value is not None:
            as_template = value if "{{" in value else "{{ " + value + " }}"
            fields.append(("if" if name == "if_" else name, as_template))
    literal = kind_of(step).literal_fields
    for name, value in step:
        if name in ("if_", "foreach", "name", "type") or name in literal:
            continue
        fields += [(path, text) for path, text in _strings(name, value)]
    return fields


def _strings(path: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _strings(f"{path}.{key}", item)]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _strings(f"{path}[{i}]", item)]
    return []


def check_tool(
    spec: ToolSpec,
    *,
    known_tools: set[str] | None = None,
    snippets: set[str] | None = None,
) -> None:
    problems = find_problems(spec, known_tools=known_tools, snippets=snippets or set())
    if problems:
        first = problems[0]
        where = f"step {first.step!r}, field {first.field!r}" if first.step else first.field
        raise InvalidInput(
            f"the tool is not valid: {where}: {first.message}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            details=[p.as_detail() for p in problems],
        )


def find_problems(
    spec: ToolSpec, *, known_tools: set[str] | None, snippets: set[str]
) -> list[Problem]:
    problems: list[Problem] = []
    params = {p.name for p in spec.params}
    if len(params) != len(spec.params):
        problems.append(Problem(None, "params", "two params have the same name"))
    for param in spec.params:
        if param.json_schema is not None:
            problems += _schema_problems(
                None, f"params.{param.name}.json_schema", param.json_schema
            )

    earlier: set[str] = set()
    for step in spec.steps:
        if step.name in earlier:
            problems.append(Problem(step.name, "name", "another step has this name"))
        for field, template in template_fields(step):
            problems += _template_problems(
                step, field, template, params=params, earlier=earlier, snippets=snippets
            )
        if isinstance(step, TransformStep):
            try:
                jmespath.compile(step.expression)
            except jmespath.exceptions.ParseError as exc:
                problems.append(Problem(step.name, "expression", f"not valid JMESPath: {exc}"))
        if isinstance(step, LlmStep) and step.json_schema is not None:
            problems += _schema_problems(step.name, "json_schema", step.json_schema)
        if (
            isinstance(step, ToolCallStep)
            and known_tools is not None
            and step.tool_id not in known_tools
        ):
            problems.append(Problem(step.name, "tool_id", f"no tool {step.tool_id!r} here"))
        earlier.add(step.name)

    if spec.output is not None:
        problems += _template_problems(
            None, "output", spec.output, params=params, earlier=earlier, snippets=snippets
        )
    return problems


def _template_problems(
    step: Step | None,
    field: str,
    template: str,
    *,
    params: set[str],
    earlier: set[str],
    snippets: set[str],
) -> list[Problem]:
    name = step.name if step is not None else None
    try:
        refs = templating.references(template)
        tree = templating.parse(template)
    except templating.TemplateError as exc:
        return [Problem(name, field, f"template does not parse: {exc}")]
    undeclared = meta.find_undeclared_variables(tree)
    problems = [
        Problem(name, field, f"unknown name {root!r}; use {_ROOT_NAMES}")
        for root in sorted(undeclared - _ROOTS)
    ]
    problems += [
        Problem(name, field, f"unknown param {p!r}") for p in sorted(refs.of("params") - params)
    ]
    for ref in sorted(refs.of("steps") - earlier):
        problems.append(
            Problem(
                name,
                field,
                f"step {ref!r} is not an earlier step"
                if step is None or ref != step.name
                else "a step cannot read its own output",
            )
        )
    problems += [
        Problem(name, field, f"unknown snippet {s!r}")
        for s in sorted(refs.of("snippets") - snippets)
    ]
    if "foreach" in undeclared and (step is None or step.foreach is None) and field != "foreach":
        problems.append(Problem(name, field, "foreach is only defined in a step with foreach"))
    secret_fields = kind_of(step).secret_fields if step is not None else None
    may_send = secret_fields is not None and secret_fields(field)
    problems += [Problem(name, field, m) for m in secret_problems(tree, may_send=may_send)]
    return problems


def _schema_problems(step: str | None, field: str, schema: dict[str, Any]) -> list[Problem]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [Problem(step, field, f"not a valid JSON Schema: {exc.message}")]
    return []


def validate_params(spec: ToolSpec | AgentSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The params a run (or an agent's task) starts with: defaults applied, each value
    checked against its type. Every problem is reported, each naming its param."""
    problems: list[dict[str, Any]] = []
    unknown = sorted(set(given) - {p.name for p in spec.params})
    problems += [{"param": name, "message": "no such param"} for name in unknown]
    values: dict[str, Any] = {}
    for param in spec.params:
        if param.name in given and given[param.name] is not None:
            value = given[param.name]
        elif param.default is not None:
            value = param.default
        elif param.required:
            problems.append({"param": param.name, "message": "required"})
            continue
        else:
            values[param.name] = None
            continue
        errors = sorted(Draft202012Validator(param_json_schema(param)).iter_errors(value), key=str)
        if errors:
            problems.append({"param": param.name, "message": errors[0].message})
        values[param.name] = value
    if problems:
        first = problems[0]
        raise InvalidInput(f"param {first['param']!r}: {first['message']}", details=problems)
    return values


def needs_secrets(step: Step) -> bool:
    """Whether a step is given the project's secrets when it runs. Only a kind that reads
    secrets (`StepKind.secret_fields`: http, which sends them out) ever is, and only when it
    names one."""
    if not kind_of(step).reads_secrets:
        return False
    return bool(step.secret_names()) or any(
        "secrets" in templating.references(text).roots() for _, text in template_fields(step)
    )


def referenced_snippets(spec: ToolSpec) -> set[str]:
    """The snippets a tool's templates read, to pin their texts when a run starts."""
    templates = [template for step in spec.steps for _, template in template_fields(step)]
    if spec.output is not None:
        templates.append(spec.output)
    names: set[str] = set()
    for template in templates:
        try:
            names |= templating.references(template).of("snippets")
        except templating.TemplateError:
            continue
    return names
