"""Tools and their versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import Tool, ToolVersion, utcnow
from baton.domain.tools import ToolSpec
from baton.errors import InvalidInput, NotFound


async def create_tool(*, session: AsyncSession, project_id: str, spec: ToolSpec) -> Tool:
    tool = Tool(project_id=project_id, name=spec.name, version=1)
    session.add(tool)
    await session.flush()
    session.add(
        ToolVersion(tool_id=tool.id, version=1, spec=spec.model_dump(mode="json", by_alias=True))
    )
    await session.flush()
    return tool


async def update_tool(
    *, session: AsyncSession, project_id: str, tool_id: str, spec: ToolSpec
) -> Tool:
    """Saves `spec` as the tool's next version; runs already started keep theirs."""
    tool = await get_tool(session=session, project_id=project_id, tool_id=tool_id)
    tool.version += 1
    tool.name = spec.name
    tool.updated_at = utcnow()
    session.add(
        ToolVersion(
            tool_id=tool.id, version=tool.version, spec=spec.model_dump(mode="json", by_alias=True)
        )
    )
    await session.flush()
    return tool


async def get_tool(*, session: AsyncSession, project_id: str, tool_id: str) -> Tool:
    tool = await session.get(Tool, tool_id)
    if tool is None or tool.project_id != project_id:
        raise NotFound(f"tool {tool_id} not found")
    return tool


async def list_tools(*, session: AsyncSession, project_id: str) -> list[Tool]:
    query = select(Tool).where(Tool.project_id == project_id).order_by(Tool.created_at, Tool.id)
    return list((await session.scalars(query)).all())


async def delete_tool(*, session: AsyncSession, project_id: str, tool_id: str) -> None:
    tool = await get_tool(session=session, project_id=project_id, tool_id=tool_id)
    users = [
        t.name
        for t, spec in (await current_specs(session=session, project_id=project_id)).items
        if tool_id in spec.referenced_tools() and t.id != tool_id
    ]
    if users:
        raise InvalidInput(
            f"tool {tool.name!r} is called by {', '.join(sorted(users))}; change those first",
            details={"called_by": sorted(users)},
        )
    await session.delete(tool)


async def get_spec(
    *, session: AsyncSession, tool_id: str, version: int | None = None
) -> tuple[int, ToolSpec]:
    # One query: the tool's current version (or the one asked for) and its spec.
    wanted = ToolVersion.version == (version if version is not None else Tool.version)
    row = (
        await session.execute(
            select(Tool.version, ToolVersion.version, ToolVersion.spec)
            .outerjoin(ToolVersion, (ToolVersion.tool_id == Tool.id) & wanted)
            .where(Tool.id == tool_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"tool {tool_id} not found")
    current, found, spec = row
    if found is None:
        raise NotFound(f"tool {tool_id} has no version {current if version is None else version}")
    return found, ToolSpec.model_validate(spec)


async def list_versions(
    *, session: AsyncSession, tool_id: str, page: PageRequest = ALL
) -> Paged[ToolVersion]:
    query = select(ToolVersion).where(ToolVersion.tool_id == tool_id)
    order = (ToolVersion.version,)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def current_specs(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[tuple[Tool, ToolSpec]]:
    """The project's tools with the spec of their current version, oldest first."""
    query = (
        select(Tool, ToolVersion)
        .join(ToolVersion, (ToolVersion.tool_id == Tool.id) & (ToolVersion.version == Tool.version))
        .where(Tool.project_id == project_id)
    )
    rows = await fetch_page(
        session=session, query=query, order=(Tool.created_at, Tool.id), page=page
    )
    return rows.map(lambda row: (row[0], ToolSpec.model_validate(row[1].spec)))


async def find_cycle(
    *, session: AsyncSession, project_id: str, tool_id: str | None, spec: ToolSpec
) -> list[str] | None:
    """The chain of tool ids that would call itself if `spec` were saved as `tool_id`."""
    graph = {
        tool.id: s.referenced_tools()
        for tool, s in (await current_specs(session=session, project_id=project_id)).items
    }
    start = tool_id or "<new>"
    graph[start] = spec.referenced_tools()

    def walk(node: str, path: list[str]) -> list[str] | None:
        for target in sorted(graph.get(node, ())):
            if target == start:
                return [*path, target]
            if target not in path:
                found = walk(target, [*path, target])
                if found:
                    return found
        return None

    return walk(start, [start])


async def pinned_closure(
    *, session: AsyncSession, tool_id: str, version: int | None = None
) -> tuple[int, dict[str, ToolSpec]]:
    """The tool's spec and those of every tool it calls, at their current versions: a run
    carries them all, so the whole tree runs the versions it started with."""
    pinned, spec = await get_spec(session=session, tool_id=tool_id, version=version)
    specs = {tool_id: spec}
    pending = list(spec.referenced_tools())
    while pending:
        callee = pending.pop()
        if callee in specs:
            continue
        _, callee_spec = await get_spec(session=session, tool_id=callee)
        specs[callee] = callee_spec
        pending += list(callee_spec.referenced_tools())
    return pinned, specs
