"""The API's own documentation works on a machine without internet, and its Authorize button
takes an API token."""

from __future__ import annotations

import re

import httpx

from tests.support import Tenant


async def test_docs_pages_load_their_assets_from_the_api_itself(api: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        response = await api.get(page)
        assert response.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', response.text)
        assert sources, f"{page} names no script or stylesheet"
        for source in sources:
            assert source.startswith("/"), f"{page} loads {source} from another host"
            asset = await api.get(source)
            assert asset.status_code == 200, source
            assert len(asset.content) > 10_000, f"{source} is not the real asset"


async def test_the_openapi_document_declares_the_token_scheme(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["token"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: 'Authorization: Bearer <token>' (or 'Token <token>')",
    }
    agents = document["paths"]["/api/v1/projects/{project_id}/agents"]["get"]
    assert agents["security"] == [{"token": []}]
    assert "security" not in document["paths"]["/api/health"]["get"]


async def test_a_bearer_token_as_the_authorize_button_sends_it(
    api: httpx.AsyncClient, tenant: Tenant
) -> None:
    bearer = {"Authorization": f"Bearer {tenant.token}"}
    assert (await api.get(tenant.url("/agents"), headers=bearer)).status_code == 200
    anonymous = await api.get(tenant.url("/agents"))
    assert anonymous.status_code == 401
    assert "Authorization" in anonymous.json()["error"]["message"]
