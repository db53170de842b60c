"""Knowledge search latency at 100,000 rows in one set: lexical, vector and hybrid, top 10,
p50 and p99 over a few hundred queries, each query timed end to end as the API runs it
(the query's embedding by the local model included).

Embedding 100,000 rows with all-MiniLM-L6-v2 on a 2-core CPU takes minutes, so the rows reuse
the real embeddings of a few thousand distinct sentences (each row is one of them plus a copy
number); the rate of the model is measured on that sample and printed. The search does the
same work whatever the vectors are.

    python bench/knowledge_search.py [--rows 100000] [--distinct 2000] [--queries 200]
                                     [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from baton.db import migrate  # noqa: E402
from baton.db.engine import create_engine, create_session_factory  # noqa: E402
from baton.db.repositories import accounts  # noqa: E402
from baton.db.repositories import knowledge_sets as set_repo  # noqa: E402
from baton.db.tables import KnowledgeRow, KnowledgeSet  # noqa: E402
from baton.domain.knowledge import KnowledgeSetSpec, SearchMode, SearchRequest  # noqa: E402
from baton.knowledge.embeddings import EmbedderFactory, LocalEmbedder, to_blob  # noqa: E402
from baton.knowledge.search import search  # noqa: E402

SUBJECTS = [
    "the river",
    "an engineer",
    "a falcon",
    "the old library",
    "our compiler",
    "the glacier",
    "a violinist",
    "the harbour",
    "a startup",
    "the orchard",
]
VERBS = ["watches", "repairs", "describes", "protects", "measures", "paints", "forgets", "feeds"]
OBJECTS = [
    "copper bridges",
    "winter storms",
    "quiet gardens",
    "broken clocks",
    "salt mines",
    "neural networks",
    "paper lanterns",
    "volcanic islands",
    "tax forms",
    "jazz records",
]
PLACES = [
    "in Lisbon",
    "near the border",
    "after midnight",
    "under heavy rain",
    "at the market",
    "in the desert",
    "on Mars",
    "during the festival",
]
INSERT_BATCH = 5_000
TOP_K = 10


def sentences(count: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}"
        )
    return sorted(seen)


async def fill(
    sessions: Any, knowledge_set: KnowledgeSet, texts: list[str], blobs: list[bytes], rows: int
) -> None:
    for start in range(0, rows, INSERT_BATCH):
        values = []
        for i in range(start, min(rows, start + INSERT_BATCH)):
            text = f"{texts[i % len(texts)]} (copy {i // len(texts)})"
            values.append(
                {
                    "set_id": knowledge_set.id,
                    "data": {"text": text, "n": i},
                    "content": text,
                    "embedding": blobs[i % len(texts)],
                }
            )
        async with sessions.begin() as session:
            await session.execute(insert(KnowledgeRow), values)


async def timed(
    label: str, queries: list[str], run: Callable[[str], Awaitable[int]]
) -> tuple[float, float]:
    latencies, hits = [], 0
    for query in queries:
        started = time.perf_counter()
        hits += await run(query)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"  {label:<8} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
        f"({len(queries)} queries, {hits / len(queries):.1f} hits each)"
    )
    return p50, p99


async def main(rows: int, distinct: int, queries: int, database: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    database_url = database or f"sqlite+aiosqlite:///{data / 'baton.db'}"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    rng = random.Random(5)
    kind = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
    print(f"knowledge_search: {rows} rows in one set, {kind}, vectors by numpy exact scan")

    texts = sentences(distinct, rng)
    model = LocalEmbedder()
    await model.embed(["warm up"])
    started = time.perf_counter()
    vectors = await model.embed(texts)
    rate = len(texts) / (time.perf_counter() - started)
    print(
        f"  local model: {rate:.0f} texts/s on this CPU ({rows / rate:.0f} s for {rows} rows); "
        f"SYNTHETIC: rows reuse the real vectors of {distinct} distinct sentences"
    )
    blobs = [to_blob(v) for v in vectors]

    async with sessions.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Bench", project_name="Bench"
        )
        knowledge_set = await set_repo.create_set(
            session=session,
            project_id=created.project.id,
            spec=KnowledgeSetSpec.model_validate(
                {"name": "bench", "columns": [{"name": "text"}], "embedding": {"provider": "local"}}
            ),
        )
    started = time.perf_counter()
    await fill(sessions, knowledge_set, texts, blobs, rows)
    print(f"  loaded {rows} rows in {time.perf_counter() - started:.1f} s")

    embedders = EmbedderFactory()
    words = [w for phrase in SUBJECTS + OBJECTS + PLACES + VERBS for w in phrase.split()]
    asked = [" ".join(rng.sample(words, 3)) for _ in range(queries)]

    def run(mode: SearchMode) -> Callable[[str], Awaitable[int]]:
        async def one(query: str) -> int:
            async with sessions() as session:
                hits = await search(
                    session=session,
                    knowledge_set=knowledge_set,
                    request=SearchRequest(query=query, mode=mode, top_k=TOP_K),
                    embedder_for=embedders,
                )
            return len(hits)

        return one

    started = time.perf_counter()
    await run(SearchMode.vector)("first query")
    print(f"  first vector query (loads the set's vectors): {time.perf_counter() - started:.2f} s")
    print(f" top-{TOP_K} latency, end to end:")
    figures = []
    for mode in (SearchMode.lexical, SearchMode.vector, SearchMode.hybrid):
        p50, p99 = await timed(mode.value, asked, run(mode))
        for name, value in (("p50", p50), ("p99", p99)):
            figures.append(
                {
                    "name": f"{mode.value} top-{TOP_K} {name}, {rows} rows ({kind})",
                    "value": value,
                    "unit": "ms",
                    "better": "lower",
                }
            )

    async with sessions.begin() as session:
        await session.execute(delete(KnowledgeSet).where(KnowledgeSet.id == knowledge_set.id))
    await engine.dispose()
    shutil.rmtree(data, ignore_errors=True)
    print("BENCH_RESULT " + json.dumps({"benchmark": "knowledge_search", "figures": figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--database-url", default="", help="Baton's database (default: a new SQLite file)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.distinct, args.queries, args.database_url))
