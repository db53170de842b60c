"""Knowledge: sets, columns, rows, imports with their jobs, export and search."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import (
    Editor,
    EmbeddersDep,
    KnowledgeSetDep,
    ModelAccessDep,
    PageDep,
    PlansDep,
    ProjectDep,
    RerankersDep,
    RowChangesDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
    page_dependency,
)
from api.schemas.knowledge import (
    JobPublic,
    KnowledgeSetPublic,
    KnowledgeSetUpdate,
    ReembedQueued,
    RowPublic,
    RowsCreated,
    TextImport,
    UrlImport,
)
from api.schemas.paging import Page
from baton.db.paging import PageRequest, decode_cursor, encode_cursor
from baton.db.repositories import knowledge_jobs as job_repo
from baton.db.repositories import knowledge_rows as row_repo
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.tables import KnowledgeSet
from baton.domain.advanced_search import AdvancedSearchRequest, AdvancedSearchResult
from baton.domain.knowledge import (
    EmbeddingConfig,
    EmbeddingProvider,
    JobKind,
    JobStatus,
    KnowledgeColumn,
    KnowledgeSetSpec,
    RowFilter,
    SearchHit,
    SearchRequest,
)
from baton.errors import BatonError, Conflict, InvalidInput
from baton.integrations import http
from baton.knowledge import export as knowledge_export
from baton.knowledge import imports, store
from baton.knowledge import search as knowledge_search
from baton.knowledge.advanced import advanced_search
from baton.knowledge.embeddings import check_provider_runs
from baton.services import knowledge_sources as source_service
from baton.services.embedding import RowChanges

# Row ids are the database's 32-bit integers: a larger one can name no row.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/knowledge",
    tags=["knowledge"],
    dependencies=[Depends(get_project)],
)
ROW_PAGE_MAXIMUM = 1000
RowPageDep = Annotated[PageRequest, page_dependency(default=100, maximum=ROW_PAGE_MAXIMUM)]

FILTERS_DESCRIPTION = (
    'A JSON array of filters, all of which a row must pass: `[{"column": "price", "op": '
    '"lte", "value": 10}]`. Ops: eq, ne (text, number, boolean or null), gt, gte, lt, lte '
    "(numbers), contains (case-insensitive text), exists (present and not null; value false "
    "for absent)."
)
_FILTERS = TypeAdapter(list[RowFilter])


# ---------------------------------------------------------------------------------------------
# Sets and columns


@router.post("/sets", status_code=status.HTTP_201_CREATED)
async def create_set(
    body: KnowledgeSetSpec, project: ProjectDep, session: SessionDep, _: Editor
) -> KnowledgeSetPublic:
    check_provider_runs(body.embedding)
    knowledge_set = await set_repo.create_set(session=session, project_id=project.id, spec=body)
    return KnowledgeSetPublic.of(knowledge_set)


@router.get("/sets")
async def list_sets(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[KnowledgeSetPublic]:
    sets = await set_repo.list_sets(session=session, project_id=project.id, page=page)
    return Page[KnowledgeSetPublic].of(sets, KnowledgeSetPublic.of)


@router.get("/sets/{set_id}")
async def get_set(_: Viewer, knowledge_set: KnowledgeSetDep) -> KnowledgeSetPublic:
    return KnowledgeSetPublic.of(knowledge_set)


@router.patch("/sets/{set_id}")
async def update_set(
    body: KnowledgeSetUpdate, session: SessionDep, _: Editor, knowledge_set: KnowledgeSetDep
) -> KnowledgeSetPublic:
    current = set_repo.spec_of(knowledge_set).model_dump()
    changes = body.model_dump(exclude_unset=True)
    spec = KnowledgeSetSpec.model_validate({**current, **changes})
    if "embedding" in changes:
        check_provider_runs(spec.embedding)
    await store.update_set(session=session, knowledge_set=knowledge_set, spec=spec)
    return KnowledgeSetPublic.of(knowledge_set)


@router.delete("/sets/{set_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_set(
    session: SessionDep, temporal_client: TemporalDep, _: Editor, knowledge_set: KnowledgeSetDep
) -> None:
    """Deletes the set, its rows and its sources (their schedules stop)."""
    await source_service.delete_set_sources(
        session=session, temporal_client=temporal_client, knowledge_set=knowledge_set
    )
    await store.delete_set(session=session, knowledge_set=knowledge_set)


@router.post("/sets/{set_id}/reembed", status_code=status.HTTP_202_ACCEPTED)
async def reembed_set(
    session: SessionDep, _: Editor, knowledge_set: KnowledgeSetDep, changes: RowChangesDep
) -> ReembedQueued:
    """Computes every row's vector again: after the embedding model changed, or for rows
    that waited for a provider that could not run. Search goes on meanwhile, lexically for
    rows whose vector is not back yet; the embedding job in `.../jobs` shows the progress."""
    config = EmbeddingConfig.model_validate(knowledge_set.embedding or {})
    if config.provider is EmbeddingProvider.none:
        raise InvalidInput(
            f"the set {knowledge_set.name!r} has no embedding provider; set one with PATCH "
            "first (its `embedding`)",
            details=[{"field": "embedding", "message": "no provider"}],
        )
    await row_repo.drop_vectors(session=session, set_id=knowledge_set.id)
    rows = await row_repo.count_to_embed(session=session, set_id=knowledge_set.id)
    await changes.embed(session, knowledge_set)
    return ReembedQueued(rows=rows)


@router.post("/sets/{set_id}/columns", status_code=status.HTTP_201_CREATED)
async def add_column(
    body: KnowledgeColumn, session: SessionDep, _: Editor, knowledge_set: KnowledgeSetDep
) -> KnowledgeSetPublic:
    """Adds a column; rows already there simply have no value in it."""
    spec = set_repo.spec_of(knowledge_set)
    if spec.column(body.name) is not None:
        raise Conflict(f"the set already has a column {body.name!r}", details=[{"field": "name"}])
    if not spec.columns and knowledge_set.row_count:
        raise InvalidInput(
            "this set has rows and no declared columns; declare columns on an empty set",
            details=[{"field": "name"}],
        )
    new_spec = spec.model_copy(update={"columns": [*spec.columns, body]})
    await store.update_set(session=session, knowledge_set=knowledge_set, spec=new_spec)
    return KnowledgeSetPublic.of(knowledge_set)


# ---------------------------------------------------------------------------------------------
# Rows


@router.get("/sets/{set_id}/rows")
async def list_rows(
    session: SessionDep,
    _: Viewer,
    knowledge_set: KnowledgeSetDep,
    page: RowPageDep,
    filters: Annotated[str | None, Query(description=FILTERS_DESCRIPTION)] = None,
) -> Page[RowPublic]:
    """In id order, the rows that pass every filter."""
    # Rows page by id alone (the store's own query, with its filters): the cursor holds it.
    after_id = decode_cursor(page.cursor, [int])[0] if page.cursor else None
    rows, next_after_id = await store.list_rows(
        session=session,
        knowledge_set=knowledge_set,
        filters=_parse_filters(filters),
        limit=page.limit or ROW_PAGE_MAXIMUM,
        after_id=after_id,
    )
    next_cursor = None if next_after_id is None else encode_cursor([next_after_id])
    return Page[RowPublic](items=[RowPublic.of(row) for row in rows], next_cursor=next_cursor)


@router.post("/sets/{set_id}/rows", status_code=status.HTTP_201_CREATED)
async def create_rows(
    body: dict[str, Any] | list[dict[str, Any]],
    session: SessionDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
    changes: RowChangesDep,
) -> RowsCreated:
    """One row (a JSON object keyed by column) or a list of them, all or none."""
    rows = body if isinstance(body, list) else [body]
    if len(rows) > imports.BATCH_ROWS:
        raise InvalidInput(
            f"at most {imports.BATCH_ROWS} rows per request; import a file for more",
            details=[{"field": "body"}],
        )
    ids = await store.insert_rows(session=session, knowledge_set=knowledge_set, rows=rows)
    await changes.embed(session, knowledge_set)
    return RowsCreated(row_ids=ids)


@router.get("/sets/{set_id}/rows/{row_id}")
async def get_row(
    row_id: RowId, session: SessionDep, _: Viewer, knowledge_set: KnowledgeSetDep
) -> RowPublic:
    return RowPublic.of(
        await store.get_row(session=session, knowledge_set=knowledge_set, row_id=row_id)
    )


@router.patch("/sets/{set_id}/rows/{row_id}")
async def update_row(
    row_id: RowId,
    body: dict[str, Any],
    session: SessionDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
    changes: RowChangesDep,
) -> RowPublic:
    """Changes the columns the body names; a null value removes that column's value."""
    row = await store.update_row(
        session=session, knowledge_set=knowledge_set, row_id=row_id, data=body
    )
    await changes.embed(session, knowledge_set)
    return RowPublic.of(row)


@router.delete("/sets/{set_id}/rows/{row_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_row(
    row_id: RowId, session: SessionDep, _: Editor, knowledge_set: KnowledgeSetDep
) -> None:
    await store.delete_row(session=session, knowledge_set=knowledge_set, row_id=row_id)


# ---------------------------------------------------------------------------------------------
# Imports and jobs


@router.post("/sets/{set_id}/imports", status_code=status.HTTP_201_CREATED)
async def import_file(
    file: UploadFile,
    session: SessionDep,
    principal: Editor,
    plans: PlansDep,
    knowledge_set: KnowledgeSetDep,
    changes: RowChangesDep,
    format: Annotated[
        str | None, Form(description="csv, jsonl or json; default: the file's extension")
    ] = None,
) -> JobPublic:
    """A CSV (header line first; cells typed by the set's columns), JSONL or JSON (one array
    of objects) file within the plan's `max_upload_bytes` and `max_rows_per_import` (at most
    100 MB and 50,000 rows unless the operator says otherwise). All rows are added or none:
    the job says how it went either way."""
    file_format = imports.format_of(file.filename, format)
    params = {"source": "file", "filename": file.filename or "", "format": file_format.value}
    return await _record_import(
        session,
        knowledge_set,
        changes,
        params,
        lambda: imports.import_file(
            session=session,
            knowledge_set=knowledge_set,
            read=file.read,
            file_format=file_format,
            limits=imports.ImportLimits.of(plans.limits(principal.plan)),
        ),
    )


@router.post("/sets/{set_id}/imports/text", status_code=status.HTTP_201_CREATED)
async def import_text(
    body: TextImport,
    session: SessionDep,
    principal: Editor,
    plans: PlansDep,
    knowledge_set: KnowledgeSetDep,
    changes: RowChangesDep,
) -> JobPublic:
    params = {"source": "text", "chunk_size": body.chunk_size, "overlap": body.overlap}
    return await _record_import(
        session,
        knowledge_set,
        changes,
        params,
        lambda: imports.import_text(
            session=session,
            knowledge_set=knowledge_set,
            text=body.text,
            source=body.source,
            chunk_size=body.chunk_size,
            overlap=body.overlap,
            limits=imports.ImportLimits.of(plans.limits(principal.plan)),
        ),
    )


@router.post("/sets/{set_id}/imports/url", status_code=status.HTTP_201_CREATED)
async def import_url(
    body: UrlImport,
    settings: SettingsDep,
    session: SessionDep,
    principal: Editor,
    plans: PlansDep,
    knowledge_set: KnowledgeSetDep,
    changes: RowChangesDep,
) -> JobPublic:
    policy = http.EgressPolicy.from_settings(settings)
    limits = imports.ImportLimits.of(plans.limits(principal.plan))
    params = {"source": "url", "url": body.url, "chunk_size": body.chunk_size}

    async def work() -> int:
        text, final_url = await imports.fetch_page(body.url, policy=policy)
        return await imports.import_text(
            session=session,
            knowledge_set=knowledge_set,
            text=text,
            source=final_url,
            chunk_size=body.chunk_size,
            overlap=body.overlap,
            limits=limits,
        )

    return await _record_import(session, knowledge_set, changes, params, work)


@router.get("/sets/{set_id}/jobs")
async def list_jobs(
    session: SessionDep, _: Viewer, knowledge_set: KnowledgeSetDep, page: PageDep
) -> Page[JobPublic]:
    """Newest first: imports, embedding and enrichment."""
    jobs = await job_repo.list_jobs(session=session, knowledge_set=knowledge_set, page=page)
    return Page[JobPublic].of(jobs, JobPublic.model_validate)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, project: ProjectDep, session: SessionDep, _: Viewer) -> JobPublic:
    job = await job_repo.get_job(session=session, project_id=project.id, job_id=job_id)
    return JobPublic.model_validate(job)


async def _record_import(
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    changes: RowChanges,
    params: dict[str, Any],
    work: Callable[[], Awaitable[int]],
) -> JobPublic:
    """Runs an import inside a savepoint, so a refused or failed import takes back every row
    it added while its job, saying why, is still committed before the error is answered."""
    job = await job_repo.create_job(
        session=session, knowledge_set=knowledge_set, kind=JobKind.import_, params=params
    )
    try:
        async with session.begin_nested():
            inserted = await work()
    except BatonError as exc:
        await job_repo.finish_job(
            session=session, job_id=job.id, status=JobStatus.failed, error=exc.message
        )
        await session.commit()
        raise
    finished = await job_repo.finish_job(
        session=session, job_id=job.id, status=JobStatus.succeeded, done=inserted
    )
    await changes.embed(session, knowledge_set)
    return JobPublic.model_validate(finished)


# ---------------------------------------------------------------------------------------------
# Export and search


@router.get(
    "/sets/{set_id}/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_csv(
    request: Request, _: Viewer, knowledge_set: KnowledgeSetDep
) -> StreamingResponse:
    """Every row as CSV, streamed; objects and lists are written as JSON."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.session_factory

    async def lines() -> AsyncIterator[str]:
        # The request's session is closed once the route returns; the stream reads on its own.
        async with sessions() as own:
            async for chunk in knowledge_export.export_csv(
                session=own, knowledge_set=knowledge_set
            ):
                yield chunk

    filename = quote(f"{knowledge_set.name}.csv")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"},
    )


@router.post("/sets/{set_id}/search")
async def search(
    body: SearchRequest,
    session: SessionDep,
    _: Viewer,
    knowledge_set: KnowledgeSetDep,
    embedders: EmbeddersDep,
    rerankers: RerankersDep,
) -> list[SearchHit]:
    """Ranked rows for a query, best first, each with its id, row and score (`top_k` of
    them, not a page). `vector` and `hybrid` (the default) need the set's embedding
    provider. With `rerank`, the first `rerank.candidates` hits (50 by default) are
    re-scored and the best `top_k` by `rerank_score` returned: `true` for the local
    bi-encoder reranker, or an integration's `POST /rerank` endpoint."""
    return await knowledge_search.search(
        session=session,
        knowledge_set=knowledge_set,
        request=body,
        embedder_for=embedders,
        rerankers=rerankers,
    )


@router.post("/sets/{set_id}/search/advanced")
async def search_advanced(
    body: AdvancedSearchRequest,
    session: SessionDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
    embedders: EmbeddersDep,
    access: ModelAccessDep,
) -> AdvancedSearchResult:
    """A search with model steps around it: `rewrite` turns the question into a search query
    (returned as `search_query`), `answer` says whether the hits answer the question and
    summarises them, citing row ids; a cited id that is not among the hits is dropped and
    listed in `dropped_citations`. Each step is one call to `model`, charged like any model
    call, so this needs the editor role."""
    return await advanced_search(
        session=session,
        knowledge_set=knowledge_set,
        request=body,
        embedder_for=embedders,
        access=access,
    )


def _parse_filters(raw: str | None) -> list[RowFilter]:
    if not raw:
        return []
    try:
        return _FILTERS.validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(
            'filters must be a JSON array like [{"column": "price", "op": "lte", "value": 10}]',
            details=[
                {"field": "filters", "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()
            ],
        ) from exc
