"""Saving a workforce (its graph checked, every agent and tool it names one of the project's),
and importing a bare definition: one whose nodes carry `agent_name` and `tool_name` (what
exports wrote before portable documents, `baton.services.portable`) finds them again in a
project where their ids differ."""

from __future__ import annotations

from typing import Any, NoReturn

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories import agents as agent_repo
from baton.db.repositories import tools as tool_repo
from baton.domain.tools import ToolSpec
from baton.domain.workforces import AgentNode, ToolNode, WorkforceSpec, check_graph
from baton.errors import InvalidInput

# What an old export added to a node beside the id it refers to, for an import to resolve.
AGENT_NAME = "agent_name"
TOOL_NAME = "tool_name"
# What a read answers beside the definition: an import of a read leaves them out.
READ_ONLY = {"id", "project_id", "version", "created_at", "updated_at"}


async def check_before_save(*, session: AsyncSession, project_id: str, spec: WorkforceSpec) -> None:
    """Refuses a graph that cannot run, an agent or tool that is not this project's (another
    project's reads as unknown, so its existence is not revealed), and a tool node param the
    tool does not take."""
    check_graph(spec)
    agents = await _agent_names(session, project_id)
    tools = await _tool_specs(session, project_id)
    for index, node in enumerate(spec.nodes):
        if isinstance(node, AgentNode) and node.agent_id not in agents:
            _refuse(
                f"nodes[{index}].agent_id",
                f"node {node.id!r}: no agent {node.agent_id!r} in this project",
            )
        if isinstance(node, ToolNode):
            tool = tools.get(node.tool_id)
            if tool is None:
                _refuse(
                    f"nodes[{index}].tool_id",
                    f"node {node.id!r}: no tool {node.tool_id!r} in this project",
                )
            unknown = sorted(name for name in node.params if tool.param(name) is None)
            if unknown:
                taken = ", ".join(p.name for p in tool.params) or "none"
                _refuse(
                    f"nodes[{index}].params.{unknown[0]}",
                    f"node {node.id!r}: the tool {tool.name!r} has no param {unknown[0]!r} "
                    f"(its params: {taken})",
                )


async def resolve_import(*, session: AsyncSession, project_id: str, data: Any) -> WorkforceSpec:
    """An exported definition (or a read of one), its references made this project's: an
    agent or tool by its id when this project has it, else by its name. One that resolves to
    nothing, or to two of the same name, is refused naming its node."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise InvalidInput(
            "the imported workforce is not valid: it needs an object with a list of nodes",
            details=[{"field": "nodes", "message": "a list of nodes is required"}],
        )
    agents = await _agent_names(session, project_id)
    tools = {
        tool_id: spec.name for tool_id, spec in (await _tool_specs(session, project_id)).items()
    }
    nodes = []
    for index, node in enumerate(data["nodes"]):
        if isinstance(node, dict):
            node = dict(node)
            agent_name = node.pop(AGENT_NAME, None)
            tool_name = node.pop(TOOL_NAME, None)
            if node.get("type") == "agent":
                node["agent_id"] = _resolve(index, node, "agent", agents, agent_name)
            elif node.get("type") == "tool":
                node["tool_id"] = _resolve(index, node, "tool", tools, tool_name)
        nodes.append(node)
    definition = {key: value for key, value in data.items() if key not in READ_ONLY}
    try:
        return WorkforceSpec.model_validate({**definition, "nodes": nodes})
    except ValidationError as exc:
        raise InvalidInput(
            "the imported workforce is not valid",
            details=[
                {"loc": list(e["loc"]), "field": _field(e["loc"]), "msg": e["msg"]}
                for e in exc.errors()
            ],
        ) from exc


def _field(loc: tuple[int | str, ...]) -> str:
    """`("nodes", 0, "agent", "id")` -> `nodes[0].agent.id`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _resolve(index: int, node: dict[str, Any], kind: str, names: dict[str, str], name: Any) -> Any:
    reference = node.get(f"{kind}_id")
    if isinstance(reference, str) and reference in names:
        return reference
    field = f"nodes[{index}].{kind}_id"
    label = node.get("id", index)
    if not isinstance(name, str):
        _refuse(field, f"node {label!r}: no {kind} {reference!r} in this project")
    found = [found_id for found_id, found_name in names.items() if found_name == name]
    if not found:
        _refuse(field, f"node {label!r}: no {kind} {reference!r} or named {name!r} in this project")
    if len(found) > 1:
        _refuse(
            field,
            f"node {label!r}: {len(found)} {kind}s are named {name!r} in this project; set "
            f"{kind}_id to the one to use",
        )
    return found[0]


async def _agent_names(session: AsyncSession, project_id: str) -> dict[str, str]:
    agents = await agent_repo.list_agents(session=session, project_id=project_id)
    return {agent.id: agent.name for agent in agents.items}


async def _tool_specs(session: AsyncSession, project_id: str) -> dict[str, ToolSpec]:
    tools = await tool_repo.current_specs(session=session, project_id=project_id)
    return {tool.id: spec for tool, spec in tools.items}


def _refuse(field: str, message: str) -> NoReturn:
    raise InvalidInput(message, details=[{"field": field, "message": message}])
