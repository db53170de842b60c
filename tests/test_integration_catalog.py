"""The catalog of integration kinds: for each, the JSON Schema of the body that creates one
(its secret fields marked write-only, its required fields listed) and what it offers. The
schema describes what the API really takes: a body it accepts is created, one it refuses is
refused."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator

from baton.domain.integrations import IntegrationKind
from tests.support import Tenant, assert_error


async def catalog(api: httpx.AsyncClient, tenant: Tenant) -> dict[str, dict[str, Any]]:
    response = await api.get("/api/v1/integration-kinds", headers=tenant.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return {item["kind"]: item for item in page["items"]}


async def test_the_catalog_lists_every_kind_with_its_schema_secrets_and_offers(
    api: httpx.AsyncClient, tenant: Tenant
):
    kinds = await catalog(api, tenant)

    assert set(kinds) == {kind.value for kind in IntegrationKind}
    openai = kinds["openai"]
    assert openai["offers"] == ["embeddings", "models"]
    assert kinds["anthropic"]["offers"] == ["models"]
    assert openai["secret_fields"] == ["api_key"]
    schema = openai["json_schema"]
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["api_key"]["writeOnly"] is True
    assert schema["properties"]["kind"] == {"const": "openai"}
    assert set(schema["required"]) == {"name", "kind"}
    assert schema["properties"]["base_url"]["anyOf"][0]["format"] == "uri"
    for info in kinds.values():
        assert info["title"] and info["description"]
        for field in info["secret_fields"]:
            assert info["json_schema"]["properties"][field]["writeOnly"] is True


async def test_a_body_the_schema_accepts_is_created_and_one_it_refuses_is_refused(
    api: httpx.AsyncClient, tenant: Tenant
):
    schema = (await catalog(api, tenant))["openai"]["json_schema"]
    validator = Draft202012Validator(schema)
    good = {"name": "gpt", "kind": "openai", "base_url": "https://api.example.com/v1"}
    assert validator.is_valid({**good, "api_key": "sk-1"})
    created = await api.post(
        tenant.url("/integrations"), json={**good, "api_key": "sk-1"}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text

    for bad in ({**good, "name": "b", "colour": "red"}, {"kind": "openai"}):
        assert not validator.is_valid(bad)
        refused = await api.post(tenant.url("/integrations"), json=bad, headers=tenant.headers)
        assert_error(refused, 422)


async def test_the_catalog_needs_a_token(api: httpx.AsyncClient):
    assert_error(await api.get("/api/v1/integration-kinds"), 401, "unauthenticated")


async def test_a_slack_app_is_created_with_both_its_secrets_and_neither_is_returned(
    api: httpx.AsyncClient, tenant: Tenant
):
    slack = (await catalog(api, tenant))["slack"]
    assert slack["secret_fields"] == ["bot_token", "signing_secret"]
    assert slack["offers"] == ["steps", "triggers"]
    validator = Draft202012Validator(slack["json_schema"])
    good = {
        "name": "team",
        "kind": "slack",
        "bot_token": "xoxb-secret-token",
        "signing_secret": "the-signing-secret",
    }
    assert validator.is_valid(good)
    created = await api.post(tenant.url("/integrations"), json=good, headers=tenant.headers)
    assert created.status_code == 201, created.text
    assert created.json()["has_key"] is True
    listed = await api.get(tenant.url("/integrations/team"), headers=tenant.headers)
    for shown in (created.text, listed.text):
        assert "xoxb-secret-token" not in shown and "the-signing-secret" not in shown

    without_secret = {k: v for k, v in good.items() if k != "signing_secret"}
    assert not validator.is_valid(without_secret)
    refused = await api.post(
        tenant.url("/integrations"), json={**without_secret, "name": "b"}, headers=tenant.headers
    )
    assert assert_error(refused, 422)["error"]["message"].startswith("signing_secret:")
    with_api_key = {**good, "name": "c", "api_key": "sk-1"}
    refused = await api.post(tenant.url("/integrations"), json=with_api_key, headers=tenant.headers)
    assert assert_error(refused, 422)["error"]["message"].startswith("api_key:")
