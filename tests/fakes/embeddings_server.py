"""`POST /v1/embeddings` as OpenAI answers it. The vectors are a bag of words hashed into a
few dimensions: texts that share words point the same way, so search order is predictable."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes import KEY_PLACEHOLDER, FakeProvider, ReceivedRequest

DIMENSIONS = 64


def bag_of_words(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z]+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    return vector


class FakeOpenAIEmbeddings(FakeProvider):
    path = "/v1/embeddings"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"message": message, "type": "invalid_request_error", "code": None}}

    async def _handle(self, request: Request) -> Response:
        received = ReceivedRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body=await request.json()
        )
        self.requests.append(received)
        if self.replies:  # a scripted error, quoting the key back as some providers do
            reply = self.replies.popleft()
            body = json.loads(
                json.dumps(reply.error_body).replace(KEY_PLACEHOLDER, received.credential)
            )
            return JSONResponse(body, reply.status, headers=reply.headers)
        texts = received.body["input"]
        texts = [texts] if isinstance(texts, str) else texts
        return JSONResponse(
            {
                "object": "list",
                "model": received.body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": bag_of_words(text)}
                    for i, text in enumerate(texts)
                ],
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
            }
        )
