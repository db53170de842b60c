"""Portable documents: an agent, a tool or a workforce written so that another project, or
another installation, can make it again.

A document is `{"kind", "version", "definition", "tools", "agents"}`. `definition` is the
exported thing; `tools` and `agents` are the definitions it runs (an agent's tools, the tools
those call, a workforce's agents and tools), so one document is a whole template. Inside a
document, everything refers to everything else by name, never by an id of this installation:
an agent's tool is `{"tool": "Lookup"}`, its knowledge `{"knowledge_set": "FAQ"}`, a tool call
step `{"tool": "Lookup"}`, a knowledge step with a fixed set `{"knowledge_set_name": "FAQ"}`, a
workforce node `{"agent": "Triage"}` or `{"tool": "Lookup"}`. Secrets, integrations and
snippets are named, as definitions always name them; their values (and integration keys) are
never part of a definition.

An import creates `definition` anew. Each agent or tool of `tools` and `agents` is the target
project's of the same name when it has one (a template's "Lookup" is the project's "Lookup"),
else it is created from the document. What the target must already hold (knowledge sets,
integrations, secrets, snippets) and does not is refused with 422 before anything is saved,
every missing one named in `details`. Cloning into another project is an export followed by
an import there, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from baton import templating
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import integrations as integration_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.repositories import secrets as secret_repo
from baton.db.repositories import snippets as snippet_repo
from baton.db.repositories import tools as tool_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Agent, Tool, Workforce
from baton.domain.agents import AgentSpec
from baton.domain.tool_checks import referenced_snippets, template_fields
from baton.domain.tools import KnowledgeStepBase, ToolCallStep, ToolSpec

# Agents, tools and workforces all allow names of this length.
from baton.domain.workforces import NAME_MAX_LENGTH, AgentNode, ToolNode, WorkforceSpec
from baton.errors import Conflict, InvalidInput
from baton.services import agent_definitions, tool_runs, workforce_definitions

Kind = Literal["agent", "tool", "workforce"]
FORMAT_VERSION = 1
# The keys a document writes in place of the ids a definition holds.
TOOL = "tool"
AGENT = "agent"
KNOWLEDGE_SET = "knowledge_set"
KNOWLEDGE_SET_NAME = "knowledge_set_name"
# What a read answers beside the definition: an import of a bare definition leaves them out.
READ_ONLY = workforce_definitions.READ_ONLY
MAX_BUNDLED = 200
"""Agents, and tools, a document may carry beside its definition."""


class PortableDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    version: Literal[1] = Field(description="The document format's version")
    definition: dict[str, Any]
    tools: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_BUNDLED)
    agents: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_BUNDLED)


def is_document(data: Any) -> bool:
    """Whether an import body is a portable document, rather than a bare definition (what
    exports wrote before documents had a `kind`, or a read of one)."""
    return isinstance(data, dict) and "kind" in data


# Export


@dataclass
class _Source:
    """The source project's names, read once per export."""

    tool_specs: dict[str, ToolSpec]
    set_names: dict[str, str]
    agents: dict[str, Agent]

    def tool_name(self, tool_id: str, used_by: str) -> str:
        spec = self.tool_specs.get(tool_id)
        if spec is None:
            raise Conflict(f"{used_by} uses tool {tool_id!r}, which no longer exists; fix it first")
        return spec.name


async def _source(session: AsyncSession, project_id: str) -> _Source:
    tools = await tool_repo.current_specs(session=session, project_id=project_id)
    sets = await set_repo.list_sets(session=session, project_id=project_id)
    agents = await agent_repo.list_agents(session=session, project_id=project_id)
    return _Source(
        tool_specs={tool.id: spec for tool, spec in tools.items},
        set_names={s.id: s.name for s in sets.items},
        agents={agent.id: agent for agent in agents.items},
    )


async def export_agent(*, session: AsyncSession, agent: Agent) -> dict[str, Any]:
    source = await _source(session, agent.project_id)
    spec = agent_repo.agent_spec(agent)
    tools = _tool_closure(source, {t.tool_id for t in spec.tools}, f"agent {spec.name!r}")
    return _document("agent", _portable_agent(source, spec), source, tools, [])


async def export_tool(*, session: AsyncSession, tool: Tool) -> dict[str, Any]:
    source = await _source(session, tool.project_id)
    spec = source.tool_specs[tool.id]
    tools = _tool_closure(source, spec.referenced_tools(), f"tool {spec.name!r}")
    return _document("tool", _portable_tool(source, spec), source, tools, [])


async def export_workforce(*, session: AsyncSession, workforce: Workforce) -> dict[str, Any]:
    source = await _source(session, workforce.project_id)
    spec = workforce_repo.workforce_spec(workforce)
    used_by = f"workforce {spec.name!r}"
    agents: dict[str, AgentSpec] = {}
    tool_ids: set[str] = set()
    for node in spec.nodes:
        if isinstance(node, AgentNode):
            agent = source.agents.get(node.agent_id)
            if agent is None:
                raise Conflict(f"{used_by} uses agent {node.agent_id!r}, which no longer exists")
            agents[agent.id] = agent_repo.agent_spec(agent)
            tool_ids |= {t.tool_id for t in agents[agent.id].tools}
        elif isinstance(node, ToolNode):
            tool_ids.add(node.tool_id)
    _unique_names("agents", [(i, a.name) for i, a in agents.items()], used_by)
    tools = _tool_closure(source, tool_ids, used_by)
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for node, dumped in zip(spec.nodes, data["nodes"], strict=True):
        dumped["type"] = node.type  # a default of each node model, but an import needs it
        if isinstance(node, AgentNode):
            dumped[AGENT] = source.agents[dumped.pop("agent_id")].name
        elif isinstance(node, ToolNode):
            dumped[TOOL] = source.tool_name(dumped.pop("tool_id"), used_by)
    portable_agents = [_portable_agent(source, a) for a in agents.values()]
    return _document("workforce", data, source, tools, portable_agents)


def _document(
    kind: Kind,
    definition: dict[str, Any],
    source: _Source,
    tools: list[ToolSpec],
    agents: list[dict[str, Any]],
) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": kind, "version": FORMAT_VERSION, "definition": definition}
    if tools:
        document["tools"] = [_portable_tool(source, t) for t in tools]
    if agents:
        document["agents"] = agents
    return document


def _tool_closure(source: _Source, roots: set[str], used_by: str) -> list[ToolSpec]:
    """The tools `roots` name and every tool those call, callees first, in an order that
    does not depend on ids (so a document exported again elsewhere is the same document)."""
    ordered: list[str] = []

    def by_name(tool_ids: set[str]) -> list[str]:
        return sorted(tool_ids, key=lambda i: (source.tool_name(i, used_by), i))

    def visit(tool_id: str) -> None:
        if tool_id in ordered:
            return
        for callee in by_name(source.tool_specs[tool_id].referenced_tools()):
            visit(callee)
        ordered.append(tool_id)

    for root in by_name(roots):
        visit(root)
    specs = [source.tool_specs[tool_id] for tool_id in ordered]
    _unique_names("tools", [(i, source.tool_specs[i].name) for i in ordered], used_by)
    return specs


def _unique_names(what: str, named: list[tuple[str, str]], used_by: str) -> None:
    """A document refers by name, so two different things of one name cannot both go in."""
    seen: dict[str, str] = {}
    for row_id, name in named:
        if seen.setdefault(name, row_id) != row_id:
            raise Conflict(
                f"{used_by} uses two {what} named {name!r}; rename one to export it",
                details={"name": name},
            )


def _portable_agent(source: _Source, spec: AgentSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for dumped in data.get("tools", []):
        dumped[TOOL] = source.tool_name(dumped.pop("tool_id"), f"agent {spec.name!r}")
    for dumped in data.get("knowledge", []):
        set_id = dumped.pop("set_id")
        if set_id not in source.set_names:
            raise Conflict(f"agent {spec.name!r} uses knowledge set {set_id!r}, which is gone")
        dumped[KNOWLEDGE_SET] = source.set_names[set_id]
    return data


def _portable_tool(source: _Source, spec: ToolSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for step, dumped in zip(spec.steps, data["steps"], strict=True):
        if isinstance(step, ToolCallStep):
            dumped[TOOL] = source.tool_name(dumped.pop("tool_id"), f"tool {spec.name!r}")
        # A fixed set is named; a template that picks one at run time stays as written.
        if isinstance(step, KnowledgeStepBase) and step.knowledge_set in source.set_names:
            dumped[KNOWLEDGE_SET_NAME] = source.set_names[dumped.pop("knowledge_set")]
    return data


# Import


@dataclass(frozen=True)
class Missing:
    """Something a document needs that the target project lacks."""

    kind: str
    name: str
    used_by: str

    def as_detail(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "used_by": self.used_by}


@dataclass(frozen=True)
class Imported:
    """What an import made: the new definition's row, and how many of the agents and tools it
    brought were created (the others were the target's own of the same name)."""

    row: Agent | Tool | Workforce
    tools_created: int
    agents_created: int


@dataclass
class _Target:
    """The target project's names, and the ids the document's names resolve to."""

    tool_ids: dict[str, list[str]]
    agent_ids: dict[str, list[str]]
    set_ids: dict[str, list[str]]
    integrations: set[str]
    secrets: set[str]
    snippets: set[str]
    missing: list[Missing] = field(default_factory=list)
    # A name the document brings and the target lacks: a placeholder id until it is created.
    planned: dict[str, str] = field(default_factory=dict)

    def resolve(self, kind: str, ids: dict[str, list[str]], name: Any, used_by: str) -> str:
        if not isinstance(name, str):
            _refuse(f"{used_by}: a {kind} is named by a text, not {name!r}")
        found = ids.get(name, [])
        if len(found) > 1:
            _refuse(
                f"{used_by}: {len(found)} {kind}s are named {name!r} in the target project; "
                "rename all but one"
            )
        if found:
            return found[0]
        planned = self.planned.get(f"{kind}:{name}")
        if planned is not None:
            return planned
        self.missing.append(Missing(kind, name, used_by))
        return f"missing:{name}"


async def _target(session: AsyncSession, project_id: str) -> _Target:
    def by_name(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for row_id, name in pairs:
            index.setdefault(name, []).append(row_id)
        return index

    tools = await tool_repo.list_tools(session=session, project_id=project_id)
    agents = await agent_repo.list_agents(session=session, project_id=project_id)
    sets = await set_repo.list_sets(session=session, project_id=project_id)
    integrations = await integration_repo.list_integrations(session=session, project_id=project_id)
    secrets = await secret_repo.list_secrets(session=session, project_id=project_id)
    return _Target(
        tool_ids=by_name([(t.id, t.name) for t in tools]),
        agent_ids=by_name([(a.id, a.name) for a in agents.items]),
        set_ids=by_name([(s.id, s.name) for s in sets.items]),
        integrations={i.name for i in integrations.items},
        secrets={s.name for s in secrets.items},
        snippets=await snippet_repo.snippet_names(session=session, project_id=project_id),
    )


def read_document(data: Any, kind: Kind) -> PortableDocument:
    """The document in an import body, refused with 422 naming each field that is wrong."""
    try:
        document = PortableDocument.model_validate(data)
    except ValidationError as exc:
        raise _invalid("the imported document is not valid", exc) from exc
    if document.kind != kind:
        _refuse(
            f"this is a {document.kind} document; import it at "
            f".../{document.kind}s/import, not .../{kind}s/import"
        )
    return document


async def import_document(
    *, session: AsyncSession, project_id: str, document: PortableDocument
) -> Imported:
    """Creates the document's definition in the project, with the tools and agents it brings
    that the project lacks; refuses it whole when the project lacks what it needs."""
    target = await _target(session, project_id)
    tools = _new_tools(target, document.tools)
    agents = _new(target, "agent", target.agent_ids, document.agents)
    # First a dry run with placeholder ids: every missing reference is found before anything
    # is written.
    for data in tools:
        _needs_of_tool(target, _tool_spec(target, data))
    for data in agents:
        _needs_of_agent(target, _agent_spec(target, data))
    definition = document.definition
    main = _main_spec(target, document.kind, definition)
    if isinstance(main, ToolSpec):
        _needs_of_tool(target, main)
    elif isinstance(main, AgentSpec):
        _needs_of_agent(target, main)
    if target.missing:
        raise _missing(target.missing)

    for data in tools:
        spec = _tool_spec(target, data)
        await tool_runs.check_before_save(session=session, project_id=project_id, spec=spec)
        tool = await tool_repo.create_tool(session=session, project_id=project_id, spec=spec)
        target.tool_ids[spec.name] = [tool.id]
    for data in agents:
        agent_spec = _agent_spec(target, data)
        await agent_definitions.check_before_save(
            session=session, project_id=project_id, spec=agent_spec
        )
        agent = await agent_repo.create_agent(
            session=session, project_id=project_id, spec=agent_spec
        )
        target.agent_ids[agent_spec.name] = [agent.id]
    target.planned.clear()
    main = _main_spec(target, document.kind, definition)
    row = await save_new(session=session, project_id=project_id, spec=main)
    return Imported(row=row, tools_created=len(tools), agents_created=len(agents))


async def save_new(
    *, session: AsyncSession, project_id: str, spec: AgentSpec | ToolSpec | WorkforceSpec
) -> Agent | Tool | Workforce:
    """A new agent, tool or workforce, checked as its create route checks it."""
    if isinstance(spec, AgentSpec):
        await agent_definitions.check_before_save(session=session, project_id=project_id, spec=spec)
        return await agent_repo.create_agent(session=session, project_id=project_id, spec=spec)
    if isinstance(spec, ToolSpec):
        await tool_runs.check_before_save(session=session, project_id=project_id, spec=spec)
        return await tool_repo.create_tool(session=session, project_id=project_id, spec=spec)
    await workforce_definitions.check_before_save(session=session, project_id=project_id, spec=spec)
    return await workforce_repo.create_workforce(session=session, project_id=project_id, spec=spec)


def _new(
    target: _Target, kind: str, ids: dict[str, list[str]], bundled: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The bundled definitions the target has none of by name, each given a placeholder id;
    the others resolve to the target's own."""
    new: list[dict[str, Any]] = []
    for index, data in enumerate(bundled):
        name = data.get("name")
        if not isinstance(name, str):
            _refuse(f"{kind}s[{index}]: a bundled {kind} needs a name")
        if name in ids or f"{kind}:{name}" in target.planned:
            continue
        target.planned[f"{kind}:{name}"] = f"new:{kind}:{name}"
        new.append(data)
    return new


def _new_tools(target: _Target, bundled: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bundled tools to create, callees first (so each can be saved in turn)."""
    new = _new(target, "tool", target.tool_ids, bundled)
    by_name = {data["name"]: data for data in new}
    ordered: list[dict[str, Any]] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(d is by_name[name] for d in ordered):
            return
        if name in visiting:
            _refuse(f"tool {name!r} calls itself through the document's tools")
        visiting.add(name)
        for step in _list(by_name[name], "steps"):
            callee = step.get(TOOL) if isinstance(step, dict) else None
            if isinstance(callee, str) and callee in by_name:
                visit(callee)
        ordered.append(by_name[name])

    for name in by_name:
        visit(name)
    return ordered


def _main_spec(
    target: _Target, kind: Kind, data: dict[str, Any]
) -> AgentSpec | ToolSpec | WorkforceSpec:
    if kind == "agent":
        return _agent_spec(target, data, where="definition")
    if kind == "tool":
        return _tool_spec(target, data, where="definition")
    return _workforce_spec(target, data)


def _tool_spec(target: _Target, data: dict[str, Any], *, where: str = "") -> ToolSpec:
    used_by = f"tool {data.get('name')!r}"
    steps = []
    for step in _list(data, "steps"):
        if isinstance(step, dict):
            step = dict(step)
            if TOOL in step:
                name = step.pop(TOOL)
                step["tool_id"] = target.resolve("tool", target.tool_ids, name, used_by)
            if KNOWLEDGE_SET_NAME in step:
                name = step.pop(KNOWLEDGE_SET_NAME)
                step["knowledge_set"] = target.resolve(
                    "knowledge set", target.set_ids, name, used_by
                )
        steps.append(step)
    return _validate(ToolSpec, {**data, "steps": steps}, where or f"tool {data.get('name')!r}")


def _agent_spec(target: _Target, data: dict[str, Any], *, where: str = "") -> AgentSpec:
    used_by = f"agent {data.get('name')!r}"
    tools = []
    for item in _list(data, "tools"):
        if isinstance(item, dict) and TOOL in item:
            item = dict(item)
            item["tool_id"] = target.resolve("tool", target.tool_ids, item.pop(TOOL), used_by)
        tools.append(item)
    knowledge = []
    for item in _list(data, "knowledge"):
        if isinstance(item, dict) and KNOWLEDGE_SET in item:
            item = dict(item)
            name = item.pop(KNOWLEDGE_SET)
            item["set_id"] = target.resolve("knowledge set", target.set_ids, name, used_by)
        knowledge.append(item)
    return _validate(AgentSpec, {**data, "tools": tools, "knowledge": knowledge}, where or used_by)


def _workforce_spec(target: _Target, data: dict[str, Any]) -> WorkforceSpec:
    used_by = f"workforce {data.get('name')!r}"
    nodes = []
    for node in _list(data, "nodes"):
        if isinstance(node, dict):
            node = dict(node)
            if AGENT in node:
                node["agent_id"] = target.resolve(
                    "agent", target.agent_ids, node.pop(AGENT), used_by
                )
            if TOOL in node:
                node["tool_id"] = target.resolve("tool", target.tool_ids, node.pop(TOOL), used_by)
        nodes.append(node)
    return _validate(WorkforceSpec, {**data, "nodes": nodes}, "definition")


def _needs_of_tool(target: _Target, spec: ToolSpec) -> None:
    used_by = f"tool {spec.name!r}"
    secrets: set[str] = set()
    for step in spec.steps:
        secrets |= step.secret_names()
        for _field, text in template_fields(step):
            try:
                secrets |= templating.references(text).of("secrets")
            except templating.TemplateError:
                continue  # the save's own check names the template that does not parse
        integration = getattr(step, "integration", None)
        if isinstance(integration, str) and integration not in target.integrations:
            target.missing.append(Missing("integration", integration, used_by))
    for name in sorted(secrets - target.secrets):
        target.missing.append(Missing("secret", name, used_by))
    for name in sorted(referenced_snippets(spec) - target.snippets):
        target.missing.append(Missing("snippet", name, used_by))


def _needs_of_agent(target: _Target, spec: AgentSpec) -> None:
    used_by = f"agent {spec.name!r}"
    integrations = [spec.integration] if spec.integration else []
    integrations += [attached.integration for attached in spec.mcp]
    for name in integrations:
        if name not in target.integrations:
            target.missing.append(Missing("integration", name, used_by))
    for name in sorted(spec.snippet_names() - target.snippets):
        target.missing.append(Missing("snippet", name, used_by))


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    return value if isinstance(value, list) else [value]


M = TypeVar("M", bound=BaseModel)


def _validate(model: type[M], data: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(f"the imported document is not valid: {where}", exc) from exc


def _invalid(message: str, exc: ValidationError) -> InvalidInput:
    details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    first = details[0]
    where = ".".join(str(part) for part in first["loc"])
    return InvalidInput(f"{message}: {where}: {first['msg']}", details=details)


def _missing(missing: list[Missing]) -> InvalidInput:
    unique = list(dict.fromkeys(missing))
    named = ", ".join(f"{m.kind} {m.name!r}" for m in unique[:5])
    more = f" (and {len(unique) - 5} more)" if len(unique) > 5 else ""
    return InvalidInput(
        f"the target project lacks what the document needs: {named}{more}; create them there first",
        details=[m.as_detail() for m in unique],
    )


def _refuse(message: str) -> NoReturn:
    raise InvalidInput(message, details=[{"message": message}])


def clone_name(name: str, limit: int) -> str:
    """A copy in the same project: "<name> (copy)", cut to fit."""
    suffix = " (copy)"
    return name[: limit - len(suffix)] + suffix


# Clone


Definition = Agent | Tool | Workforce


KINDS: dict[type[Any], Kind] = {Agent: "agent", Tool: "tool", Workforce: "workforce"}


def kind_of(row: Definition) -> Kind:
    return KINDS[type(row)]


async def export(*, session: AsyncSession, row: Definition) -> dict[str, Any]:
    if isinstance(row, Agent):
        return await export_agent(session=session, agent=row)
    if isinstance(row, Tool):
        return await export_tool(session=session, tool=row)
    return await export_workforce(session=session, workforce=row)


async def clone(*, session: AsyncSession, row: Definition, project_id: str) -> Imported:
    """A new definition like `row` in `project_id` (the caller has checked it may write
    there). In its own project it is named "<name> (copy)" and runs the same agents and tools;
    in another it keeps its name, and what it runs is that project's of the same names, or
    cloned along with it."""
    if project_id != row.project_id:
        document = PortableDocument.model_validate(await export(session=session, row=row))
        return await import_document(session=session, project_id=project_id, document=document)
    spec = await _current_spec(session, row)
    copy = spec.model_copy(update={"name": clone_name(spec.name, NAME_MAX_LENGTH)})
    return Imported(
        row=await save_new(session=session, project_id=project_id, spec=copy),
        tools_created=0,
        agents_created=0,
    )


async def _current_spec(
    session: AsyncSession, row: Definition
) -> AgentSpec | ToolSpec | WorkforceSpec:
    if isinstance(row, Agent):
        return agent_repo.agent_spec(row)
    if isinstance(row, Tool):
        _version, spec = await tool_repo.get_spec(session=session, tool_id=row.id)
        return spec
    return workforce_repo.workforce_spec(row)
