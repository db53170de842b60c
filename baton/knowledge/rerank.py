"""Reranking a search's first-pass candidates, best first by the reranker's score.

Two rerankers, behind one small protocol:

- `local`, a *bi-encoder* reranker on the shipped all-MiniLM-L6-v2 (no package we could find
  ships a cross-encoder's weights for offline use). The first pass compares the query with one
  vector of a row's whole text; this compares it with each passage of the row (its sentences
  and pairs of neighbouring sentences) and keeps the best, so a row that answers in one
  sentence among others is not diluted by them. That score is blended with the row's
  first-pass rank, which still carries what the words matched.
- `integration`, a Cohere/Jina-style `POST {base_url}/rerank` (`{model, query, documents,
  top_n}` -> `{results: [{index, relevance_score}]}`), which Cohere, Jina, vLLM, llama.cpp
  server and LiteLLM answer, reached with the base URL and key of a project's
  OpenAI-compatible integration, through the egress guard like any provider call."""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from typing import Any, Protocol

import httpx2
import numpy

from baton.db.repositories.knowledge_sets import spec_of
from baton.db.tables import KnowledgeSet
from baton.domain.knowledge import SearchHit, row_content
from baton.domain.llm import ProviderConfig
from baton.domain.models import OPENAI_PROVIDER
from baton.domain.rerank import RerankOptions, RerankProvider
from baton.errors import InvalidInput
from baton.integrations.llm import egress, errors
from baton.knowledge.embeddings import Embedder, LocalEmbedder, ProviderConfigs, Vectors

# A passage is a sentence, or a line of a list; long rows are cut to this many passages.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
MAX_PASSAGES = 32
# Passage vectors kept per process: 20,000 of 384 float32s is about 30 MB.
PASSAGE_CACHE_SIZE = 20_000
# How much a candidate's first-pass rank weighs beside its best passage's cosine: the prior
# is PRIOR_WEIGHT * PRIOR_K / (PRIOR_K + rank), so the first candidate gets PRIOR_WEIGHT and
# the tenth half of it. A first choice, not tuned: bench/search_quality.py measures it.
PRIOR_WEIGHT = 0.1
PRIOR_K = 10
# A provider reranker's answer: an HTTP call, like an embedding request.
ENDPOINT_TIMEOUT_SECONDS = 30.0
_ENDPOINT = "rerank endpoint"


class Reranker(Protocol):
    """Scores for `documents` against `query`, one per document, higher is better. The
    documents come in first-pass order, best first."""

    async def scores(self, query: str, documents: list[str]) -> list[float]: ...


def passages(text: str) -> list[str]:
    """A row's sentences, and each pair of neighbouring ones (an answer may span two)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(sentences)]
    return (sentences + pairs)[:MAX_PASSAGES] or [text]


class LocalReranker:
    """The bi-encoder reranker on the local model (see the module's docstring)."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        # Passage vectors by text: the same rows come back as candidates query after query,
        # and embedding their passages is most of a rerank's cost.
        self._passages: OrderedDict[str, Vectors] = OrderedDict()

    async def scores(self, query: str, documents: list[str]) -> list[float]:
        split = [passages(document) for document in documents]
        flat = [passage for row in split for passage in row]
        query_vector = (await self._embedder.embed([query]))[0]
        known = await self._passage_vectors(flat)
        similarities = numpy.stack([known[p] for p in flat]) @ query_vector
        scores: list[float] = []
        start = 0
        for rank, row in enumerate(split, start=1):
            best = float(numpy.max(similarities[start : start + len(row)]))
            start += len(row)
            scores.append(best + PRIOR_WEIGHT * PRIOR_K / (PRIOR_K + rank))
        return scores

    async def _passage_vectors(self, texts: list[str]) -> dict[str, Vectors]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._passages))
        if missing:
            for text, vector in zip(missing, await self._embedder.embed(missing), strict=True):
                self._passages[text] = vector
        found = {}
        for text in texts:
            self._passages.move_to_end(text)
            found[text] = self._passages[text]
        while len(self._passages) > PASSAGE_CACHE_SIZE:
            self._passages.popitem(last=False)
        return found


class EndpointReranker:
    """A provider's `POST /rerank`. Retries are the caller's (Temporal's, in a step)."""

    def __init__(self, config: ProviderConfig, *, model: str) -> None:
        if not config.base_url:
            raise InvalidInput(
                "a rerank integration needs a base_url: the endpoint that serves /rerank "
                "(for example https://api.cohere.com/v1)",
                details=[{"field": "rerank.integration", "message": "no base_url"}],
            )
        self._config = config
        self._model = model
        self._url = config.base_url.rstrip("/") + "/rerank"

    async def scores(self, query: str, documents: list[str]) -> list[float]:
        key = self._config.api_key.get_secret_value() if self._config.api_key else None
        body: dict[str, Any] = {
            "model": self._model,
            "query": query,
            "documents": documents,
            "top_n": len(documents),
        }
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = egress.http_client(self._config) or httpx2.AsyncClient(trust_env=False)
        try:
            async with client:
                response = await client.post(
                    self._url, json=body, headers=headers, timeout=ENDPOINT_TIMEOUT_SECONDS
                )
        except httpx2.TransportError as exc:
            raise errors.connection_failed(
                _ENDPOINT, base_url=self._url, cause=exc, secret=key
            ) from exc
        if response.status_code >= 400:
            raise errors.http_error(
                _ENDPOINT,
                status=response.status_code,
                headers=response.headers,
                body=_json_or_text(response),
                fallback=response.reason_phrase,
                secret=key,
            )
        return _scores_of(_json_or_text(response), len(documents))


def _json_or_text(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _scores_of(answer: Any, count: int) -> list[float]:
    """Each document's relevance_score by its index; a document the endpoint left out ranks
    last."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list):
        raise errors.ProviderError(
            f"{_ENDPOINT} answered without a results list", provider=_ENDPOINT, retryable=False
        )
    scores: list[float | None] = [None] * count
    for result in results:
        try:
            index, score = int(result["index"]), float(result["relevance_score"])
        except (KeyError, TypeError, ValueError):
            raise errors.ProviderError(
                f"{_ENDPOINT} answered a result without index and relevance_score",
                provider=_ENDPOINT,
                retryable=False,
            ) from None
        if 0 <= index < count:
            scores[index] = score
    floor = min((s for s in scores if s is not None), default=0.0) - 1.0
    return [floor if s is None else s for s in scores]


class Rerankers:
    """The reranker a search asks for: the process's one local model, or an endpoint whose
    integration is resolved at call time (the key read only where it is used)."""

    def __init__(
        self, provider_configs: ProviderConfigs | None = None, local: Embedder | None = None
    ) -> None:
        self._provider_configs = provider_configs
        self._local = LocalReranker(local or LocalEmbedder())

    async def __call__(self, options: RerankOptions, *, project_id: str) -> Reranker:
        if options.provider is RerankProvider.local:
            return self._local
        assert options.integration is not None and options.model is not None
        config = None
        if self._provider_configs is not None:
            config = await self._provider_configs(
                OPENAI_PROVIDER, project_id=project_id, integration=options.integration
            )
        if config is None:
            raise InvalidInput(
                f"no integration {options.integration!r} to rerank with: name an "
                "OpenAI-compatible integration of the project whose base_url serves /rerank",
                details=[{"field": "rerank.integration", "message": "not found"}],
            )
        return EndpointReranker(config, model=options.model)


async def reranked(
    *,
    knowledge_set: KnowledgeSet,
    query: str,
    candidates: list[SearchHit],
    options: RerankOptions,
    top_k: int,
    rerankers: Rerankers,
) -> list[SearchHit]:
    """The best `top_k` of the candidates (given best first) by the reranker's score; ties
    keep the first pass's order."""
    if not candidates:
        return []
    reranker = await rerankers(options, project_id=knowledge_set.project_id)
    columns = spec_of(knowledge_set).columns
    documents = [row_content(columns, hit.row) for hit in candidates]
    scores = await reranker.scores(query, documents)
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    return [candidates[i].model_copy(update={"rerank_score": scores[i]}) for i in order[:top_k]]
