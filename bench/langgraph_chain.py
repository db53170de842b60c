"""The 5-step chain of bench/tool_overhead.py as a LangGraph graph with its SQLite
checkpointer: what a team might pick instead of Baton. Its three model steps call the same
offline scripted model through Baton's provider code, its two pure steps do what Baton's
template and transform steps do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from baton.domain.llm import LlmRequest, Message, MessageRole
from baton.integrations import llm


class ChainState(TypedDict, total=False):
    x: str
    a: str
    b: str
    c: str
    d: str
    e: str


async def _model(prompt: str) -> str:
    request = LlmRequest(
        model="scripted:echo", messages=[Message(role=MessageRole.user, content=prompt)]
    )
    return (await llm.complete(request)).content


async def a(state: ChainState) -> dict[str, Any]:
    return {"a": await _model(state["x"])}


async def b(state: ChainState) -> dict[str, Any]:
    return {"b": str(len(state["a"]))}


async def c(state: ChainState) -> dict[str, Any]:
    return {"c": await _model(state["b"])}


async def d(state: ChainState) -> dict[str, Any]:
    return {"d": json.loads(json.dumps([state["c"]]))[0]}


async def e(state: ChainState) -> dict[str, Any]:
    return {"e": await _model(state["d"])}


class LangGraphChain:
    """`async with LangGraphChain(path) as chain: await chain.run(thread_id, x)`."""

    def __init__(self, path: Path) -> None:
        self._path = path

    async def __aenter__(self) -> LangGraphChain:
        self._connection = await aiosqlite.connect(self._path)
        saver = AsyncSqliteSaver(self._connection)
        await saver.setup()
        graph = StateGraph(ChainState)
        for name, node in (("a", a), ("b", b), ("c", c), ("d", d), ("e", e)):
            graph.add_node(name, node)
        graph.add_edge(START, "a")
        for first, then in (("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")):
            graph.add_edge(first, then)
        graph.add_edge("e", END)
        self._graph = graph.compile(checkpointer=saver)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._connection.close()

    async def run(self, thread_id: str, x: str) -> str:
        final = await self._graph.ainvoke(
            {"x": x}, config={"configurable": {"thread_id": thread_id}}
        )
        return str(final["e"])
