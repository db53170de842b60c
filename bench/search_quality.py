"""Search quality on the labelled set of tests/data/search_quality.json: recall@5 and MRR (the
mean of 1 / rank of the first answering row, 0 when it is not in the top 10) for lexical,
vector, hybrid and hybrid + the local reranker, through `baton.knowledge.search.search`, the
function the API's search route runs, on a fresh SQLite database with the real local model.

    python bench/search_quality.py [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from baton.db import migrate  # noqa: E402
from baton.db.engine import create_engine, create_session_factory  # noqa: E402
from baton.db.repositories import accounts  # noqa: E402
from baton.db.repositories import knowledge_rows as row_repo  # noqa: E402
from baton.db.repositories import knowledge_sets as set_repo  # noqa: E402
from baton.db.tables import KnowledgeSet  # noqa: E402
from baton.domain.knowledge import KnowledgeSetSpec, SearchRequest  # noqa: E402
from baton.knowledge import store  # noqa: E402
from baton.knowledge.embeddings import EmbedderFactory, LocalEmbedder, to_blob  # noqa: E402
from baton.knowledge.rerank import Rerankers  # noqa: E402
from baton.knowledge.search import search  # noqa: E402

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "search_quality.json"
RECALL_AT = 5
DEPTH = 10
SETUPS: list[tuple[str, dict[str, Any]]] = [
    ("lexical", {"mode": "lexical"}),
    ("vector", {"mode": "vector"}),
    ("hybrid", {"mode": "hybrid"}),
    ("hybrid + rerank", {"mode": "hybrid", "rerank": True}),
]


def labelled() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LABELLED.read_text())
    return data


async def load(sessions: Any, rows: list[dict[str, Any]]) -> tuple[KnowledgeSet, dict[int, str]]:
    """The rows in a `local` set, embedded as the embedding activity embeds them; row id ->
    key."""
    async with sessions.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Bench", project_name="Bench"
        )
        knowledge_set = await set_repo.create_set(
            session=session,
            project_id=created.project.id,
            spec=KnowledgeSetSpec.model_validate(
                {
                    "name": "help centre",
                    "columns": [
                        {"name": "key", "searchable": False},
                        {"name": "title"},
                        {"name": "text"},
                    ],
                    "embedding": {"provider": "local"},
                }
            ),
        )
        row_ids = await store.insert_rows(session=session, knowledge_set=knowledge_set, rows=rows)
    async with sessions() as session:
        pending = await row_repo.rows_to_embed(
            session=session, set_id=knowledge_set.id, limit=len(rows)
        )
    vectors = await LocalEmbedder().embed([content for _, content in pending])
    async with sessions.begin() as session:
        await row_repo.store_vectors(
            session=session,
            set_id=knowledge_set.id,
            vectors=[
                (row_id, content, to_blob(v))
                for (row_id, content), v in zip(pending, vectors, strict=True)
            ],
        )
    return knowledge_set, {row_id: row["key"] for row_id, row in zip(row_ids, rows, strict=True)}


async def measure(
    sessions: Any,
    knowledge_set: KnowledgeSet,
    keys: dict[int, str],
    questions: list[dict[str, Any]],
    options: dict[str, Any],
) -> tuple[float, float, float]:
    """recall@5, MRR, mean milliseconds per query."""
    embedders, rerankers = EmbedderFactory(), Rerankers()
    recall = reciprocal = 0.0
    started = time.perf_counter()
    for question in questions:
        request = SearchRequest.model_validate(
            {"query": question["query"], "top_k": DEPTH, **options}
        )
        async with sessions() as session:
            hits = await search(
                session=session,
                knowledge_set=knowledge_set,
                request=request,
                embedder_for=embedders,
                rerankers=rerankers,
            )
        ranked = [keys[hit.row_id] for hit in hits]
        answers = set(question["answers"])
        recall += len(answers & set(ranked[:RECALL_AT])) / len(answers)
        first = next((rank for rank, key in enumerate(ranked, 1) if key in answers), None)
        reciprocal += 1 / first if first else 0.0
    elapsed = (time.perf_counter() - started) * 1000 / len(questions)
    return recall / len(questions), reciprocal / len(questions), elapsed


async def main(database: str) -> None:
    data = labelled()
    folder = Path(tempfile.mkdtemp(prefix="baton-quality-"))
    database_url = database or f"sqlite+aiosqlite:///{folder / 'baton.db'}"
    await migrate.aupgrade(database_url)
    sessions = create_session_factory(create_engine(database_url))
    knowledge_set, keys = await load(sessions, data["rows"])
    questions = data["questions"]
    kind = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
    print(
        f"search_quality: {len(keys)} rows, {len(questions)} questions, {kind}, "
        f"local model; top {DEPTH} read, rerank of the first 50 candidates"
    )
    print(f"  {'search':<16} {'recall@5':>9} {'MRR':>7} {'ms/query':>9}")
    for label, options in SETUPS:
        recall, mrr, ms = await measure(sessions, knowledge_set, keys, questions, options)
        print(f"  {label:<16} {recall:9.3f} {mrr:7.3f} {ms:9.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.database_url))
