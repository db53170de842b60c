"""Advanced search run in the API's process: rewrite the question (one model call), search,
then check the hits answer it and summarise them with citations (one more model call).

A search is a read: like a plain search, which embeds its query by calling the provider from
the request, it calls the model from the request and keeps nothing but the credits it spent.
No connection is held while a model thinks: the request's session is committed before each
call. Each call on the installation's key is charged its vendor credits at once, in its own
transaction, so a search that fails after its first call still pays for that call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import credits as credit_repo
from baton.db.tables import KnowledgeSet
from baton.domain.advanced_search import (
    ANSWER_SCHEMA,
    ANSWER_SYSTEM_PROMPT,
    REWRITE_SCHEMA,
    REWRITE_SYSTEM_PROMPT,
    AdvancedSearchRequest,
    AdvancedSearchResult,
    AnswerOutput,
    RewriteOutput,
    advanced_search_key,
    answer_message,
    checked,
    rewrite_message,
)
from baton.domain.credits import Currency, PlanBook
from baton.domain.knowledge import SearchRequest
from baton.domain.llm import LlmRequest, Message, MessageRole, TokenUsage
from baton.domain.models import PROVIDERS
from baton.integrations import llm
from baton.integrations.llm.errors import ProviderError
from baton.knowledge import search as knowledge_search
from baton.knowledge.embeddings import EmbedderFor
from baton.services.provider_configs import ProviderConfigResolver

_Output = TypeVar("_Output", bound=BaseModel)


@dataclass(frozen=True)
class ModelAccess:
    """How the search reaches its model and pays for it: the project's provider configs, the
    installation's plans (None: not metered) and sessions of its own for the charges."""

    provider_configs: ProviderConfigResolver
    plans: PlanBook | None
    sessions: async_sessionmaker[AsyncSession]


async def advanced_search(
    *,
    session: AsyncSession,
    knowledge_set: KnowledgeSet,
    request: AdvancedSearchRequest,
    embedder_for: EmbedderFor,
    access: ModelAccess,
) -> AdvancedSearchResult:
    """Raises OutOfCredits (402) before any call the organisation cannot pay for, and
    ProviderError (502) when the model fails or answers other than the JSON asked for."""
    project_id = knowledge_set.project_id
    config = await access.provider_configs(
        llm.provider_of(request.model), project_id=project_id, integration=request.integration
    )
    billed = config is not None and config.trusted
    if billed and access.plans is not None and request.model in access.plans.prices:
        await credit_repo.require(
            session=session,
            plans=access.plans,
            project_id=project_id,
            currency=Currency.vendor_credits,
        )
    search_id = uuid.uuid4().hex
    usage = TokenUsage()

    async def ask(step: str, system: str, content: str, schema: dict[str, object]) -> str:
        nonlocal usage
        await session.commit()  # no connection held while the model thinks
        response = await llm.complete(
            LlmRequest(
                model=request.model,
                messages=[
                    Message(role=MessageRole.system, content=system),
                    Message(role=MessageRole.user, content=content),
                ],
                json_schema=schema,
            ),
            config=config,
        )
        usage = _added(usage, response.usage)
        if billed and access.plans is not None:
            async with access.sessions.begin() as own:
                await credit_repo.charge_llm_call(
                    session=own,
                    plans=access.plans,
                    project_id=project_id,
                    key=advanced_search_key(search_id, step),
                    model=request.model,
                    input_tokens=response.usage.input_tokens,
                    output_tokens=response.usage.output_tokens,
                    cached_input_tokens=response.usage.cached_input_tokens,
                )
        return response.content

    search_query = request.query
    if request.rewrite:
        text = await ask(
            "rewrite", REWRITE_SYSTEM_PROMPT, rewrite_message(request.query), REWRITE_SCHEMA
        )
        search_query = _parsed(RewriteOutput, text, request.model).query
    hits = await knowledge_search.search(
        session=session,
        knowledge_set=knowledge_set,
        request=SearchRequest.model_validate(
            {**request.model_dump(include=set(SearchRequest.model_fields)), "query": search_query}
        ),
        embedder_for=embedder_for,
    )
    answer = None
    if request.answer:
        text = await ask(
            "answer", ANSWER_SYSTEM_PROMPT, answer_message(request.query, hits), ANSWER_SCHEMA
        )
        answer = checked(_parsed(AnswerOutput, text, request.model), hits)
    known = PROVIDERS.get(llm.provider_of(request.model))
    return AdvancedSearchResult(
        query=request.query,
        search_query=search_query,
        rewritten=request.rewrite,
        hits=hits,
        answer=answer,
        model=request.model,
        offline_model=known is not None and known.offline,
        usage=usage,
    )


def _parsed(model: type[_Output], text: str, model_ref: str) -> _Output:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        provider = llm.provider_of(model_ref)
        raise ProviderError(
            f"{model_ref} did not answer with the JSON asked for: {exc.errors()[0]['msg']}",
            provider=provider,
            retryable=True,
        ) from exc


def _added(total: TokenUsage, more: TokenUsage) -> TokenUsage:
    return TokenUsage(
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        cached_input_tokens=total.cached_input_tokens + more.cached_input_tokens,
    )
