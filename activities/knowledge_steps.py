"""The knowledge steps of a tool run: search a set, insert, update and delete its rows.

A step names its set by id (or a template giving it); the set must belong to the run's
project. Rows written here get their vectors from the set's embedding workflow afterwards."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.heartbeats import with_heartbeats
from activities.steps import render_string, render_value
from baton.db.repositories import knowledge_sets as set_repo
from baton.db.tables import KnowledgeSet
from baton.domain.knowledge import EmbeddingProvider, RowFilter, SearchRequest
from baton.domain.tool_runs import StepCall, StepOutcome
from baton.domain.tools import (
    KnowledgeDeleteStep,
    KnowledgeInsertStep,
    KnowledgeSearchStep,
    KnowledgeUpdateStep,
)
from baton.errors import BatonError
from baton.knowledge import search as knowledge_search
from baton.knowledge import store
from baton.knowledge.embeddings import EmbedderFactory
from baton.knowledge.rerank import Rerankers
from baton.services.embedding import embed_pending


class KnowledgeStepActivities:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        embedders: EmbedderFactory,
        rerankers: Rerankers,
    ) -> None:
        self._sessions = session_factory
        self._embedders = embedders
        self._rerankers = rerankers

    @activity.defn(name="baton.step.knowledge_search")
    async def search(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, KnowledgeSearchStep)
        context = call.context
        try:
            request = SearchRequest(
                query=render_string(step.query, context),
                mode=step.mode,
                top_k=step.top_k,
                filters=[RowFilter.model_validate(f) for f in render_value(step.filters, context)],
                rerank=step.rerank,
            )
        except ValidationError as exc:
            raise _invalid(f"search: {_first_error(exc)}") from None

        async def work() -> Any:
            async with self._sessions() as session:
                knowledge_set = await self._set(session, call, step.knowledge_set)
                hits = await knowledge_search.search(
                    session=session,
                    knowledge_set=knowledge_set,
                    request=request,
                    embedder_for=self._embedders,
                    rerankers=self._rerankers,
                )
            return [hit.model_dump(mode="json", exclude_none=True) for hit in hits]

        return await _outcome(work())

    @activity.defn(name="baton.step.knowledge_insert")
    async def insert(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, KnowledgeInsertStep)
        rows = render_value(step.rows, call.context)
        rows = [rows] if isinstance(rows, dict) else rows
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise _invalid("rows must be a JSON object or a list of objects")

        async def work() -> Any:
            async with self._sessions.begin() as session:
                knowledge_set = await self._set(session, call, step.knowledge_set)
                row_ids = await store.insert_rows(
                    session=session, knowledge_set=knowledge_set, rows=rows
                )
            await self._embed(knowledge_set)
            return {"row_ids": row_ids}

        return await _outcome(work())

    @activity.defn(name="baton.step.knowledge_update")
    async def update(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, KnowledgeUpdateStep)
        row_id = _row_id(render_string(step.row_id, call.context))
        data = render_value(step.data, call.context)

        async def work() -> Any:
            async with self._sessions.begin() as session:
                knowledge_set = await self._set(session, call, step.knowledge_set)
                row = await store.update_row(
                    session=session, knowledge_set=knowledge_set, row_id=row_id, data=data
                )
                result = {"row_id": row.id, "row": row.data}
            await self._embed(knowledge_set)
            return result

        return await _outcome(work())

    @activity.defn(name="baton.step.knowledge_delete")
    async def delete(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, KnowledgeDeleteStep)
        row_id = _row_id(render_string(step.row_id, call.context))

        async def work() -> Any:
            async with self._sessions.begin() as session:
                knowledge_set = await self._set(session, call, step.knowledge_set)
                await store.delete_row(session=session, knowledge_set=knowledge_set, row_id=row_id)
            return {"deleted": row_id}

        return await _outcome(work())

    async def _set(self, session: AsyncSession, call: StepCall, template: str) -> KnowledgeSet:
        set_id = render_string(template, call.context)
        return await set_repo.get_set(session=session, project_id=call.project_id, set_id=set_id)

    async def _embed(self, knowledge_set: KnowledgeSet) -> None:
        if knowledge_set.embedding.get("provider", "none") != EmbeddingProvider.none:
            await embed_pending(
                activity.client(),
                project_id=knowledge_set.project_id,
                set_id=knowledge_set.id,
                task_queue=activity.info().task_queue,
            )


async def _outcome(work: Any) -> StepOutcome:
    try:
        return StepOutcome(output=await with_heartbeats(work))
    except BatonError as exc:
        raise as_application_error(exc) from None


# Row ids are the database's 32-bit integers.
MAX_ROW_ID = 2**31 - 1


def _row_id(text: str) -> int:
    try:
        row_id = int(text)
    except ValueError:
        raise _invalid(f"row_id must be a row's number, got {text[:60]!r}") from None
    if not 1 <= row_id <= MAX_ROW_ID:
        raise _invalid(f"row_id {row_id} is out of range: no row has it")
    return row_id


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="invalid_input", non_retryable=True)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
