"""The knowledge pages: the project's sets, and a set with its rows a page at a time, a
search box, and an import of text with its jobs (a job at work shows a progress bar, and
the page reads itself again until it is done)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from api.console.core import (
    Console,
    EditorConsole,
    FormDep,
    ViewerConsole,
    console_router,
    render,
    submit,
)
from api.deps import EmbeddersDep, PlansDep, RowChangesDep, SessionDep
from api.routes import knowledge as knowledge_routes
from api.schemas.knowledge import TextImport
from baton.db.paging import PageRequest
from baton.db.repositories import knowledge_jobs as job_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.domain.knowledge import JobStatus, SearchRequest
from baton.knowledge import search as knowledge_search

router = console_router()

ROWS_PER_PAGE = 25
JOBS_SHOWN = 10
WORKING = {JobStatus.queued.value, JobStatus.running.value}


@router.get("/knowledge")
async def sets_page(request: Request, console: ViewerConsole, session: SessionDep) -> Response:
    sets = await set_repo.list_sets(session=session, project_id=console.project.id)
    return render(request, "knowledge.html", console.state, console=console, sets=sets.items)


@router.get("/knowledge/{set_id}")
async def set_page(
    set_id: str,
    request: Request,
    console: ViewerConsole,
    session: SessionDep,
    embedders: EmbeddersDep,
    cursor: str = "",
    q: str = "",
) -> Response:
    return await _set(request, console, session, embedders, set_id, cursor=cursor, q=q)


async def _set(
    request: Request,
    console: Console,
    session: SessionDep,
    embedders: EmbeddersDep,
    set_id: str,
    *,
    cursor: str = "",
    q: str = "",
    text: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    knowledge_set = await set_repo.get_set(
        session=session, project_id=console.project.id, set_id=set_id
    )
    rows = await knowledge_routes.list_rows(
        session=session,
        _=console.principal,
        knowledge_set=knowledge_set,
        page=PageRequest(limit=ROWS_PER_PAGE, cursor=cursor or None),
        filters=None,
    )
    hits = (
        await knowledge_routes.search(
            body=SearchRequest(query=q.strip()),
            session=session,
            _=console.principal,
            knowledge_set=knowledge_set,
            embedders=embedders,
            # The console's search is never reranked.
            rerankers=knowledge_search.LOCAL_ONLY,
        )
        if q.strip()
        else []
    )
    jobs = await job_repo.list_jobs(
        session=session, knowledge_set=knowledge_set, page=PageRequest(limit=JOBS_SHOWN)
    )
    columns = sorted({name for row in rows.items for name in row.data})
    return render(
        request,
        "knowledge_set.html",
        console.state,
        console=console,
        knowledge_set=knowledge_set,
        rows=rows.items,
        columns=columns,
        next_cursor=rows.next_cursor,
        q=q,
        hits=hits,
        jobs=jobs.items,
        working=any(job.status in WORKING for job in jobs.items),
        text=text,
        error=error,
        status_code=status_code,
    )


@router.post("/knowledge/{set_id}/imports")
async def import_text(
    set_id: str,
    request: Request,
    console: EditorConsole,
    session: SessionDep,
    plans: PlansDep,
    changes: RowChangesDep,
    embedders: EmbeddersDep,
    form: FormDep,
) -> Response:
    """Imports the pasted text as rows, through the API's text import (its job says how it
    went, and embedding the rows goes on in the background)."""
    knowledge_set = await set_repo.get_set(
        session=session, project_id=console.project.id, set_id=set_id
    )

    async def run_import() -> str:
        await knowledge_routes.import_text(
            body=TextImport(text=form["text"], source=form["source"] or "console"),
            session=session,
            principal=console.principal,
            plans=plans,
            knowledge_set=knowledge_set,
            changes=changes,
        )
        return f"/knowledge/{knowledge_set.id}"

    async def again(error: str, status_code: int) -> Response:
        return await _set(
            request,
            console,
            session,
            embedders,
            knowledge_set.id,
            text=form["text"],
            error=error,
            status_code=status_code,
        )

    return await submit(run_import, on_error=again)
