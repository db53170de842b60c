"""The tasks inbox, a task's page, and the forms on it (approve or reject a tool call,
reply)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Header, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from temporalio.client import Client

from api.console.core import (
    Console,
    EditorConsole,
    Form,
    FormDep,
    ViewerConsole,
    back_to,
    console_router,
    error_text,
    render,
    see,
    submit,
)
from api.deps import SessionDep, SettingsDep, TemporalDep
from api.limits import MAX_DB_INTEGER
from api.routes import task_events as task_event_routes
from api.routes import tasks as task_routes
from api.routes import workforce_tasks
from api.routes.workforce_tasks import is_workforce_task
from api.schemas.tasks import ApprovalDecision, MessageCreate
from baton.db.paging import PageRequest
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import events as event_repo
from baton.db.repositories import tasks as task_repo
from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Task
from baton.domain.events import EventType
from baton.domain.llm import Message, MessageRole
from baton.domain.tasks import PendingApproval, TaskStatus
from baton.errors import BatonError, Conflict, InvalidInput

router = console_router()

INBOX_PAGE = 50
# The events a task page reads for its timeline (the first of them; it streams the rest).
EVENTS_SHOWN = 500
# Not on a task's timeline: a streamed answer's pieces (the answer itself is in the
# conversation) and the running token count.
UNTIMED = {EventType.message_delta.value, EventType.usage.value}


@dataclass(frozen=True)
class InboxRow:
    task: Task
    pending: list[PendingApproval]
    name: str = ""
    """The agent's or workforce's name."""
    temporal_ui_url: str = ""

    @property
    def asks_a_question(self) -> bool:
        """Waiting on something other than a tool call (its budget reached: go on?)."""
        return any(p.question for p in self.pending)

    @property
    def bulk_call(self) -> str:
        """The one tool call a bulk decision may answer; "" when there is none to answer so."""
        if len(self.pending) == 1 and not self.asks_a_question:
            return self.pending[0].call_id
        return ""

    @property
    def not_bulk(self) -> str:
        """Why the task is left out of bulk decisions."""
        if self.asks_a_question:
            return "asks a question: answer it on its page"
        if len(self.pending) > 1:
            return f"{len(self.pending)} approvals wait: decide each on its page"
        return ""


def _waits_for_a_tool_call(row: InboxRow) -> bool:
    return not row.pending or any(p.question is None for p in row.pending)


def _needs_a_person(row: InboxRow) -> bool:
    return row.task.status != TaskStatus.waiting_approval or row.asks_a_question


@dataclass(frozen=True)
class Tab:
    """An inbox tab: the statuses it reads, then which of a page's tasks it keeps (a page
    of a tab that keeps fewer may be short; "Older tasks" goes on from where it ended)."""

    title: str
    about: str
    statuses: frozenset[TaskStatus] | None
    """None: every status."""
    keeps: Callable[[InboxRow], bool] = lambda row: True


TABS: dict[str, Tab] = {
    "approvals": Tab(
        "Approvals",
        "Tasks waiting for a person to approve or reject a tool call.",
        frozenset({TaskStatus.waiting_approval}),
        _waits_for_a_tool_call,
    ),
    "escalated": Tab(
        "Escalated",
        "Tasks that stopped for a person, not for a tool call: the agent reached its budget "
        "for one task and asks whether to go on, the organisation ran out of credits "
        "(out-of-credits, it goes on once credits arrive), or a workforce node failed and "
        "waits for a message (escalated).",
        frozenset({TaskStatus.waiting_approval, TaskStatus.out_of_credits, TaskStatus.escalated}),
        _needs_a_person,
    ),
    "errors": Tab(
        "Errors",
        "Tasks that failed or ran out of time.",
        frozenset({TaskStatus.failed, TaskStatus.timed_out}),
    ),
    "all": Tab("All", "Every task, newest first.", None),
}


@dataclass(frozen=True)
class InboxFilter:
    """The inbox's query: a tab and filters (each "" for any), also kept by a bulk form."""

    tab: str = "approvals"
    agent_id: str = ""
    workforce_id: str = ""
    status: str = ""

    @classmethod
    def of(cls, tab: str, agent_id: str, workforce_id: str, status: str) -> InboxFilter:
        return cls(
            tab=tab if tab in TABS else "approvals",
            agent_id=agent_id,
            workforce_id=workforce_id,
            status=status if status in set(TaskStatus) else "",
        )

    @property
    def statuses(self) -> frozenset[TaskStatus] | None:
        shown = TABS[self.tab].statuses
        if not self.status:
            return shown
        chosen = TaskStatus(self.status)
        return frozenset({chosen}) & shown if shown is not None else frozenset({chosen})

    def url(self, **changes: str) -> str:
        query = {k: v for k, v in {**asdict(self), **changes}.items() if v}
        return f"/tasks?{urlencode(query)}"


@router.get("/tasks")
async def inbox(
    request: Request,
    console: ViewerConsole,
    session: SessionDep,
    settings: SettingsDep,
    tab: str = "approvals",
    agent_id: str = "",
    workforce_id: str = "",
    status: str = "",
    cursor: str = "",
    notice: str = "",
    error: str = "",
) -> Response:
    chosen = InboxFilter.of(tab, agent_id, workforce_id, status)
    page = await task_repo.list_tasks(
        session=session,
        principal=console.principal,
        project_id=console.project.id,
        agent_id=chosen.agent_id or None,
        workforce_id=chosen.workforce_id or None,
        statuses=chosen.statuses,
        page=PageRequest(limit=INBOX_PAGE, cursor=cursor or None),
    )
    agents = await agent_repo.list_agents(session=session, project_id=console.project.id)
    workforces = await workforce_repo.list_workforces(
        session=session, project_id=console.project.id
    )
    names = {a.id: a.name for a in agents.items} | {w.id: w.name for w in workforces.items}
    pending = await _pending(session, page.items)
    rows = [
        row
        for row in (
            InboxRow(
                task=task,
                pending=pending.get(task.id, []),
                name=names.get(task.workforce_id or task.agent_id or "", task.kind),
                temporal_ui_url=settings.temporal_ui_link(task.workflow_id),
            )
            for task in page.items
        )
        if TABS[chosen.tab].keeps(row)
    ]
    return render(
        request,
        "tasks.html",
        console.state,
        console=console,
        chosen=chosen,
        tabs=TABS,
        rows=rows,
        bulk=any(row.bulk_call for row in rows) and console.can("editor"),
        left_out=[row for row in rows if row.not_bulk],
        next_url=chosen.url(cursor=page.next_cursor) if page.next_cursor else "",
        agents=agents.items,
        workforces=workforces.items,
        statuses=[s.value for s in TaskStatus],
        notice=notice,
        error=error,
    )


def approves(form: Form) -> bool:
    """The form's `decision`: its Approve or its Reject button, nothing else (a form sent
    without either rejects nothing by mistake)."""
    decision = form["decision"]
    if decision not in ("approve", "reject"):
        raise InvalidInput("decision: press Approve or Reject")
    return decision == "approve"


def edited_arguments(form: Form) -> dict[str, Any] | None:
    """The arguments the member wrote over the model's, if any: a JSON object."""
    if not form["arguments"]:
        return None
    try:
        arguments = json.loads(form["arguments"])
    except ValueError as exc:
        raise InvalidInput(f"arguments: not JSON ({exc})") from exc
    if not isinstance(arguments, dict):
        raise InvalidInput('arguments: a JSON object, like {"text": "hi"}')
    return arguments


async def _pending(session: SessionDep, tasks: list[Task]) -> dict[str, list[PendingApproval]]:
    """The approvals each task waiting for approval waits on."""
    waiting = [t for t in tasks if t.status == TaskStatus.waiting_approval]
    pending = await event_repo.open_approvals(
        session=session, task_ids=[t.id for t in waiting if not is_workforce_task(t)]
    )
    for task in waiting:
        if is_workforce_task(task):
            pending[task.id] = await workforce_tasks.pending_approvals(session, task)
    return pending


@router.post("/tasks/decisions")
async def decide_many(
    console: EditorConsole,
    session: SessionDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    """Approves or rejects the one waiting tool call of each task ticked (`call` is
    `<task id>/<call id>`). Each is checked again: a task that now waits on more than one
    call, or on another, is left out and named, as is one whose decision failed."""
    back = InboxFilter.of(form["tab"], form["agent_id"], form["workforce_id"], form["status"])
    try:
        approve = approves(form)
    except InvalidInput as exc:
        return see(back.url(error=exc.message))
    decided: list[str] = []
    problems: list[str] = []
    for ticked in form.all("call"):
        task_id, _, call_id = ticked.partition("/")
        try:
            await _decide_one(
                console, session, temporal_client, task_id, call_id, approve, form["reason"]
            )
        except (BatonError, ValidationError) as exc:
            problems.append(f"task {task_id[:8]}: {error_text(exc)}")
            continue
        decided.append(task_id)
    if not decided and not problems:
        return see(back.url(error="Tick the tasks to decide first."))
    verb = "Approved" if approve else "Rejected"
    notice = f"{verb} the tool call of {len(decided)} task{'s' if len(decided) != 1 else ''}."
    return see(back.url(notice=notice, error="; ".join(problems)))


async def _decide_one(
    console: Console,
    session: SessionDep,
    temporal_client: Client,
    task_id: str,
    call_id: str,
    approve: bool,
    reason: str,
) -> None:
    task = await task_repo.get_task(
        session=session, principal=console.principal, project_id=console.project.id, task_id=task_id
    )
    row = InboxRow(task=task, pending=(await _pending(session, [task])).get(task.id, []))
    if row.bulk_call != call_id:
        raise Conflict(row.not_bulk or "that tool call no longer waits for approval")
    await task_routes.decide(
        task_id=task_id,
        call_id=call_id,
        body=ApprovalDecision(approve=approve, reason=reason),
        project=console.project,
        session=session,
        principal=console.principal,
        temporal_client=temporal_client,
    )


@router.get("/tasks/{task_id}")
async def task_page(
    task_id: str,
    request: Request,
    console: ViewerConsole,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    error: str = "",
) -> Response:
    # The last event's seq first: the page streams those after it, and the task read next
    # is at least as new, so no change falls between the two.
    after = await event_repo.last_seq(session=session, task_id=task_id)
    task = await task_routes.get_task(
        task_id=task_id,
        project=console.project,
        session=session,
        principal=console.principal,
        settings=settings,
        temporal_client=temporal_client,
    )
    # A tool call folds open to its input, its output (the tool message, then not shown on
    # its own) and, while it waits, the approve and reject buttons.
    agent_messages = [m for m in task.messages if isinstance(m, Message)]
    results = {
        m.tool_call_id: m.content
        for m in agent_messages
        if m.role is MessageRole.tool and m.tool_call_id
    }
    calls = {call.id for m in agent_messages for call in m.tool_calls}
    events = await event_repo.list_events(session=session, task_id=task.id, limit=EVENTS_SHOWN)
    return render(
        request,
        "task.html",
        console.state,
        console=console,
        task=task,
        timeline=[e for e in events if e.type not in UNTIMED],
        results=results,
        pending={p.call_id: p for p in task.pending_approvals},
        # Waiting decisions that are not a call of the conversation (a budget question).
        elsewhere=[p for p in task.pending_approvals if p.call_id not in calls],
        after=after,
        final=task.status.is_final,
        error=error,
    )


@router.get("/tasks/{task_id}/events")
async def task_events(
    task_id: str,
    request: Request,
    console: ViewerConsole,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=MAX_DB_INTEGER)] = 0,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_DB_INTEGER)] = None,
) -> Response:
    """The task's events as Server-Sent Events for the page's script: the API's stream,
    behind the console's session instead of a token (an EventSource sends no header)."""
    return await task_event_routes.stream_task_events(
        task_id=task_id,
        request=request,
        project=console.project,
        session=session,
        principal=console.principal,
        after=after,
        last_event_id=last_event_id,
    )


@router.post("/tasks/{task_id}/approvals/{call_id}")
async def decide(
    task_id: str,
    call_id: str,
    console: EditorConsole,
    session: SessionDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    async def send_decision() -> str:
        await task_routes.decide(
            task_id=task_id,
            call_id=call_id,
            body=ApprovalDecision(
                approve=approves(form), arguments=edited_arguments(form), reason=form["reason"]
            ),
            project=console.project,
            session=session,
            principal=console.principal,
            temporal_client=temporal_client,
        )
        return f"/tasks/{task_id}"

    return await submit(send_decision, on_error=back_to(f"/tasks/{task_id}"))


@router.post("/tasks/{task_id}/messages")
async def send_message(
    task_id: str,
    console: EditorConsole,
    session: SessionDep,
    temporal_client: TemporalDep,
    form: FormDep,
) -> Response:
    async def reply() -> str:
        await task_routes.send_message(
            task_id=task_id,
            body=MessageCreate(message=form["message"]),
            project=console.project,
            session=session,
            principal=console.principal,
            temporal_client=temporal_client,
        )
        return f"/tasks/{task_id}"

    return await submit(reply, on_error=back_to(f"/tasks/{task_id}"))
