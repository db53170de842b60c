"""Integrations. The key is write-only: no response model has a field that could hold it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.schemas.updates import update_of
from baton.db.repositories.integrations import spec_of
from baton.db.tables import Integration
from baton.domain.integrations import IntegrationSpec, KindInfo, Offer


def _secret(description: str) -> Any:
    return Field(default=None, min_length=1, max_length=10_000, description=description)


class IntegrationCreate(IntegrationSpec):
    api_key: SecretStr | None = _secret(
        "Stored encrypted and never returned; a local server may need none"
    )
    bot_token: SecretStr | None = _secret(
        "slack: the bot's token; stored encrypted, never returned"
    )
    signing_secret: SecretStr | None = _secret(
        "slack: the app's signing secret; stored encrypted, never returned"
    )

    def secrets_given(self) -> dict[str, str]:
        return _given(self)


class IntegrationKeyUpdate(BaseModel):
    """The part of an integration's update that is not in its spec: the key."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = _secret("Replaces the stored key")
    bot_token: SecretStr | None = _secret("slack: replaces the bot token (with signing_secret)")
    signing_secret: SecretStr | None = _secret(
        "slack: replaces the signing secret (with bot_token)"
    )

    def secrets_given(self) -> dict[str, str]:
        return _given(self)


SECRET_FIELDS = ("api_key", "bot_token", "signing_secret")


def _given(body: BaseModel) -> dict[str, str]:
    """The secrets the body carries, revealed: for the route to store, never to return."""
    values = {name: getattr(body, name) for name in SECRET_FIELDS}
    return {name: value.get_secret_value() for name, value in values.items() if value is not None}


INTEGRATION_NOT_UPDATABLE: frozenset[str] = frozenset()
if TYPE_CHECKING:
    IntegrationUpdate = IntegrationKeyUpdate
else:
    IntegrationUpdate = update_of(
        IntegrationSpec,
        name="IntegrationUpdate",
        doc="The fields to change; a new base_url, url, host, port or kind needs the key again.",
        not_updatable=INTEGRATION_NOT_UPDATABLE,
        base=IntegrationKeyUpdate,
    )


class IntegrationPublic(IntegrationSpec):
    id: str
    project_id: str
    has_key: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Integration) -> IntegrationPublic:
        return cls(
            **spec_of(row).model_dump(),
            id=row.id,
            project_id=row.project_id,
            has_key=row.key_ciphertext is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class IntegrationKindPublic(BaseModel):
    """One kind of the catalog: how to create an integration of it and what it gives."""

    kind: str
    title: str
    description: str
    offers: list[Offer] = Field(description="What its integrations give a project")
    secret_fields: list[str] = Field(
        description="Stored encrypted and never returned (`writeOnly` in the schema)"
    )
    json_schema: dict[str, Any] = Field(
        description="The JSON Schema of the body that creates one (POST .../integrations)"
    )

    @classmethod
    def of(cls, info: KindInfo) -> IntegrationKindPublic:
        return cls(
            kind=info.kind.value,
            title=info.title,
            description=info.description,
            offers=sorted(info.offers),
            secret_fields=list(info.secrets),
            json_schema=info.json_schema(),
        )


class IntegrationTestResult(BaseModel):
    """Whether the integration answered; the reason when it did not."""

    ok: bool
    error: str | None = Field(default=None, description="What failed, when ok is false")
    models: list[str] = Field(default_factory=list, description="LLM kinds: the models listed")
    tools: list[str] = Field(default_factory=list, description="MCP: the server's tools")
