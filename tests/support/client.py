"""The real app in process, and how a test reads its answers."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from temporalio.client import Client

from api.app import create_app
from baton.settings import Settings


@asynccontextmanager
async def api_client(
    settings: Settings, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """The app built from `settings`, started and served over httpx's ASGI transport, for
    tests whose settings differ from the `api` fixture's."""
    app = create_app(settings, temporal_client=temporal_client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baton.test") as client:
            yield client


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a JSON error of the documented shape with the expected status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return body


def body_of(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The JSON object a response carries, once its status is `status` (else the test fails
    showing what the response said)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def cursor_of(values: Any) -> str:
    """A cursor as a list's `next_cursor` spells one (base64 JSON), holding any values."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


async def items_of(api: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[Any]:
    """Every item of a list endpoint, page after page."""
    items: list[Any] = []
    cursor = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        response = await api.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def create_token(
    api: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await api.post("/api/v1/tokens", json={"name": "t", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
