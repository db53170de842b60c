"""`POST /v1/rerank` as Cohere and Jina answer it: `{model, query, documents, top_n}` ->
`{results: [{index, relevance_score}]}`, best first. A document's score is the share of the
query's words it contains, so a test can predict the order."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes import FakeProvider, ReceivedRequest


def overlap(query: str, document: str) -> float:
    asked = set(re.findall(r"[a-z]+", query.lower()))
    found = set(re.findall(r"[a-z]+", document.lower()))
    return len(asked & found) / max(1, len(asked))


class FakeReranker(FakeProvider):
    path = "/v1/rerank"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    async def _handle(self, request: Request) -> Response:
        received = ReceivedRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body=await request.json()
        )
        self.requests.append(received)
        if self.replies:
            reply = self.replies.popleft()
            return JSONResponse(reply.error_body, reply.status, headers=reply.headers)
        body = received.body
        scored = [
            {"index": i, "relevance_score": overlap(body["query"], document)}
            for i, document in enumerate(body["documents"])
        ]
        scored.sort(key=lambda result: -result["relevance_score"])
        return JSONResponse({"model": body["model"], "results": scored[: body["top_n"]]})
