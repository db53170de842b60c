"""The workforces pages: the list, and a workforce's graph (drawn as SVG on the server, and
as tables of its nodes and edges) with its tasks."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from api.console.core import ViewerConsole, console_router, render
from api.deps import SessionDep
from baton.db.paging import PageRequest
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import tools as tool_repo
from baton.db.repositories import workforces as workforce_repo
from baton.domain.workforces import AgentNode, ConditionNode, ToolNode, WorkforceSpec

router = console_router()

TASKS_SHOWN = 20
# The drawing's grid: a column per step from the entry, a row per node in the column.
BOX_WIDTH, BOX_HEIGHT, COLUMN, ROW, MARGIN = 150, 44, 200, 70, 10


@dataclass(frozen=True)
class Box:
    id: str
    label: str
    kind: str
    x: int
    y: int


@dataclass(frozen=True)
class Arrow:
    start: str
    end: str
    label: str
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Drawing:
    boxes: list[Box]
    arrows: list[Arrow]
    width: int
    height: int


def links(spec: WorkforceSpec) -> list[tuple[str, str, str]]:
    """Every (from, to, label) of the graph: its edges and its conditions' branches."""
    found = [(e.from_, e.to, e.kind.value) for e in spec.edges]
    for node in spec.nodes:
        if isinstance(node, ConditionNode):
            found += [(node.id, b.to, b.label or "branch") for b in node.branches]
            if node.default:
                found.append((node.id, node.default, "default"))
    return found


def draw(spec: WorkforceSpec, names: dict[str, str]) -> Drawing:
    """Columns by distance from the entry (nodes it does not reach come last)."""
    edges = links(spec)
    depth = {spec.entry: 0}
    queue = deque([spec.entry])
    while queue:
        reached = queue.popleft()
        for start, end, _ in edges:
            if start == reached and end not in depth:
                depth[end] = depth[reached] + 1
                queue.append(end)
    last = max(depth.values(), default=0) + 1
    columns: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for node in spec.nodes:
        column = depth.get(node.id, last)
        row = columns.get(column, 0)
        columns[column] = row + 1
        boxes[node.id] = Box(
            id=node.id,
            label=f"{node.id}: {names.get(_target(node), node.type)}",
            kind=node.type,
            x=MARGIN + column * COLUMN,
            y=MARGIN + row * ROW,
        )
    arrows = [
        Arrow(
            start=start,
            end=end,
            label=label,
            x1=boxes[start].x + BOX_WIDTH,
            y1=boxes[start].y + BOX_HEIGHT // 2,
            x2=boxes[end].x,
            y2=boxes[end].y + BOX_HEIGHT // 2,
        )
        for start, end, label in edges
        if start in boxes and end in boxes
    ]
    width = MARGIN * 2 + (max(columns) + 1) * COLUMN if columns else 0
    height = MARGIN * 2 + max(columns.values(), default=0) * ROW
    return Drawing(boxes=list(boxes.values()), arrows=arrows, width=width, height=height)


def _target(node: AgentNode | ToolNode | ConditionNode) -> str:
    if isinstance(node, AgentNode):
        return node.agent_id
    if isinstance(node, ToolNode):
        return node.tool_id
    return ""


@router.get("/workforces")
async def workforces_page(
    request: Request, console: ViewerConsole, session: SessionDep
) -> Response:
    workforces = await workforce_repo.list_workforces(
        session=session, project_id=console.project.id
    )
    return render(
        request, "workforces.html", console.state, console=console, workforces=workforces.items
    )


@router.get("/workforces/{workforce_id}")
async def workforce_page(
    workforce_id: str, request: Request, console: ViewerConsole, session: SessionDep
) -> Response:
    workforce = await workforce_repo.get_workforce(
        session=session, project_id=console.project.id, workforce_id=workforce_id
    )
    spec = WorkforceSpec.model_validate(workforce.spec)
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    tools = await tool_repo.list_tools(session=session, project_id=console.project.id)
    names = {a.id: a.name for a in agents.items} | {t.id: t.name for t in tools}
    tasks = await task_repo.list_tasks(
        session=session,
        principal=console.principal,
        project_id=console.project.id,
        workforce_id=workforce.id,
        page=PageRequest(limit=TASKS_SHOWN),
    )
    return render(
        request,
        "workforce.html",
        console.state,
        console=console,
        workforce=workforce,
        spec=spec,
        drawing=draw(spec, names),
        links=links(spec),
        names=names,
        target=_target,
        tasks=[t for t in tasks.items if t.parent_task_id is None],
        box_width=BOX_WIDTH,
        box_height=BOX_HEIGHT,
    )
