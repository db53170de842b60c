"""Knowledge steps in tools: search a set, insert, update and delete its rows, through real
tool runs on the real Temporal server and worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker

from baton.db.repositories import knowledge_sets as set_repo
from baton.db.tables import KnowledgeRow
from baton.domain.knowledge import KnowledgeSetSpec
from baton.knowledge import store
from tests.support import Tenant
from tests.test_tools import run, save

FACTS = [
    {"title": "Rivers", "text": "The Danube flows through ten countries into the Black Sea."},
    {"title": "Mountains", "text": "Mont Blanc is the highest mountain of the Alps."},
    {"title": "Deserts", "text": "The Atacama in Chile is among the driest places on Earth."},
]


async def new_set(
    session_factory: async_sessionmaker[AsyncSession],
    tenant: Tenant,
    *,
    embedding: str = "none",
    rows: list[dict[str, Any]] | None = None,
) -> str:
    spec = KnowledgeSetSpec.model_validate(
        {
            "name": f"facts-{embedding}",
            "columns": [{"name": "title"}, {"name": "text"}],
            "embedding": {"provider": embedding},
        }
    )
    async with session_factory.begin() as session:
        knowledge_set = await set_repo.create_set(
            session=session, project_id=tenant.project_id, spec=spec
        )
        await store.insert_rows(session=session, knowledge_set=knowledge_set, rows=rows or [])
        return knowledge_set.id


def one_step_tool(step: dict[str, Any], params: list[str]) -> dict[str, Any]:
    return {
        "name": f"knowledge {step['type']}",
        "params": [{"name": name, "type": "json"} for name in params],
        "steps": [{"name": "k", **step}],
    }


async def test_a_search_step_returns_hits_with_row_id_row_and_score(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    set_id = await new_set(session_factory, tenant, rows=FACTS)
    tool = await save(
        api,
        tenant,
        one_step_tool(
            {
                "type": "knowledge_search",
                "knowledge_set": "{{ params.set }}",
                "query": "{{ params.q }}",
                "mode": "lexical",
                "top_k": 2,
                "filters": [{"column": "title", "op": "ne", "value": "Rivers"}],
            },
            ["set", "q"],
        ),
    )
    result = await run(api, tenant, tool["id"], {"set": set_id, "q": "highest mountain Alps"})
    assert result["status"] == "succeeded", result
    hits = result["output"]
    assert hits[0]["row"]["title"] == "Mountains"
    assert isinstance(hits[0]["row_id"], int) and hits[0]["score"] > 0
    assert all(hit["row"]["title"] != "Rivers" for hit in hits)


async def test_insert_update_and_delete_steps_change_the_set(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    set_id = await new_set(session_factory, tenant)
    insert = await save(
        api,
        tenant,
        one_step_tool(
            {"type": "knowledge_insert", "knowledge_set": set_id, "rows": "{{ params.rows }}"},
            ["rows"],
        ),
    )
    inserted = await run(api, tenant, insert["id"], {"rows": FACTS})
    assert inserted["status"] == "succeeded", inserted
    row_ids = inserted["output"]["row_ids"]
    assert len(row_ids) == 3

    update = await save(
        api,
        tenant,
        one_step_tool(
            {
                "type": "knowledge_update",
                "knowledge_set": set_id,
                "row_id": "{{ params.id }}",
                "data": {"text": "{{ params.text }}"},
            },
            ["id", "text"],
        ),
    )
    updated = await run(
        api, tenant, update["id"], {"id": row_ids[0], "text": "The Danube ends in a delta."}
    )
    assert updated["status"] == "succeeded", updated
    assert updated["output"]["row"] == {"title": "Rivers", "text": "The Danube ends in a delta."}

    delete = await save(
        api,
        tenant,
        one_step_tool(
            {"type": "knowledge_delete", "knowledge_set": set_id, "row_id": "{{ params.id }}"},
            ["id"],
        ),
    )
    deleted = await run(api, tenant, delete["id"], {"id": row_ids[1]})
    assert deleted["status"] == "succeeded", deleted

    async with session_factory() as session:
        rows = (
            await session.execute(
                select(KnowledgeRow.id, KnowledgeRow.content).where(KnowledgeRow.set_id == set_id)
            )
        ).all()
        knowledge_set = await set_repo.get_set(
            session=session, project_id=tenant.project_id, set_id=set_id
        )
    assert sorted(r.id for r in rows) == sorted([row_ids[0], row_ids[2]])
    assert "delta" in dict(rows)[row_ids[0]]  # the search text follows the update
    assert knowledge_set.row_count == 2

    missing = await run(api, tenant, delete["id"], {"id": row_ids[1]})
    assert missing["status"] == "failed"
    assert "not found" in missing["error"]


async def test_a_step_cannot_reach_another_projects_set(
    api: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    theirs = await new_set(session_factory, other_tenant, rows=FACTS)
    tool = await save(
        api,
        tenant,
        one_step_tool(
            {"type": "knowledge_search", "knowledge_set": theirs, "query": "Danube", "retries": 0},
            [],
        ),
    )
    result = await run(api, tenant, tool["id"])
    assert result["status"] == "failed"
    assert f"knowledge set {theirs} not found" in result["error"]
    async with session_factory() as session:
        count = await session.scalar(
            select(func.count()).select_from(KnowledgeRow).where(KnowledgeRow.set_id == theirs)
        )
    assert count == 3


async def test_rows_inserted_by_a_step_are_embedded_and_found_by_meaning(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    set_id = await new_set(session_factory, tenant, embedding="local")
    insert = await save(
        api,
        tenant,
        one_step_tool(
            {"type": "knowledge_insert", "knowledge_set": set_id, "rows": "{{ params.rows }}"},
            ["rows"],
        ),
    )
    assert (await run(api, tenant, insert["id"], {"rows": FACTS}))["status"] == "succeeded"
    async with asyncio.timeout(120):
        while True:
            async with session_factory() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(KnowledgeRow)
                    .where(KnowledgeRow.set_id == set_id, KnowledgeRow.embedding.is_(None))
                )
            if pending == 0:
                break
            await asyncio.sleep(0.2)

    search = await save(
        api,
        tenant,
        one_step_tool(
            {
                "type": "knowledge_search",
                "knowledge_set": set_id,
                "query": "{{ params.q }}",
                "mode": "vector",
                "top_k": 1,
            },
            ["q"],
        ),
    )
    # No word in common with the answer: only the vectors can find it.
    result = await run(api, tenant, search["id"], {"q": "arid sandy wasteland"}, timeout=120)
    assert result["status"] == "succeeded", result
    assert result["output"][0]["row"]["title"] == "Deserts"
