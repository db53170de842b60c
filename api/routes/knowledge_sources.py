"""A knowledge set's synced sources: web pages, sitemaps, feeds and file URLs re-fetched on
an interval (baton/services/knowledge_sources.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from api.deps import (
    Editor,
    KnowledgeSetDep,
    PageDep,
    SessionDep,
    SettingsDep,
    TemporalDep,
    Viewer,
    get_project,
)
from api.schemas.knowledge import KnowledgeSourcePublic, SyncStarted
from api.schemas.paging import Page
from baton.db.repositories import knowledge_sources as source_repo
from baton.domain.knowledge_sources import KnowledgeSourceSpec
from baton.services import knowledge_sources as source_service

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/knowledge/sets/{set_id}/sources",
    tags=["knowledge"],
    dependencies=[Depends(get_project)],
)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_source(
    body: KnowledgeSourceSpec,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
) -> KnowledgeSourcePublic:
    """A web page (its text in chunks), a sitemap (every page it lists, up to 500), an RSS or
    Atom feed (a row per item) or a file URL (CSV, JSON, JSONL or text), fetched now and then
    every `interval_minutes` (at least 5) through the egress guard, with `ETag` and
    `Last-Modified` so an unchanged document costs one request. A changed page replaces its
    rows, a page gone from the sitemap or an item gone from the feed removes its rows; a
    failing source keeps its rows and says why. A URL to an address the guard refuses is
    refused here (422)."""
    source = await source_service.create_source(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        knowledge_set=knowledge_set,
        spec=body,
    )
    return KnowledgeSourcePublic.model_validate(source)


@router.get("")
async def list_sources(
    session: SessionDep, _: Viewer, knowledge_set: KnowledgeSetDep, page: PageDep
) -> Page[KnowledgeSourcePublic]:
    """Oldest first, each with its last sync's outcome and counts."""
    sources = await source_repo.list_sources(session=session, set_id=knowledge_set.id, page=page)
    return Page[KnowledgeSourcePublic].of(sources, KnowledgeSourcePublic.model_validate)


@router.get("/{source_id}")
async def get_source(
    source_id: str, session: SessionDep, _: Viewer, knowledge_set: KnowledgeSetDep
) -> KnowledgeSourcePublic:
    source = await source_repo.get_source(
        session=session, set_id=knowledge_set.id, source_id=source_id
    )
    return KnowledgeSourcePublic.model_validate(source)


@router.delete("/{source_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_source(
    source_id: str,
    session: SessionDep,
    temporal_client: TemporalDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
) -> None:
    """Stops the source's schedule and deletes it together with every row it wrote."""
    source = await source_repo.get_source(
        session=session, set_id=knowledge_set.id, source_id=source_id
    )
    await source_service.delete_source(
        session=session, temporal_client=temporal_client, knowledge_set=knowledge_set, source=source
    )


@router.post("/{source_id}/sync", status_code=status.HTTP_202_ACCEPTED)
async def sync_source(
    source_id: str,
    session: SessionDep,
    settings: SettingsDep,
    temporal_client: TemporalDep,
    _: Editor,
    knowledge_set: KnowledgeSetDep,
) -> SyncStarted:
    """Syncs the source now; the source's `last_*` fields show the outcome once its workflow
    (`workflow_id`) ends."""
    source = await source_repo.get_source(
        session=session, set_id=knowledge_set.id, source_id=source_id
    )
    workflow_id = await source_service.sync_now(
        temporal_client=temporal_client, settings=settings, source=source
    )
    return SyncStarted(workflow_id=workflow_id)
