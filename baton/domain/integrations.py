"""Project-level integrations: how a project reaches what lies outside Baton (an LLM provider
with its own key, an MCP server). Each kind is one `KindInfo` in `KINDS`: its config model,
what it offers, its secret fields; `GET /api/v1/integration-kinds` is that registry.

An integration's spec is flat (`{"name", "kind", ...its config's fields}`), as the API takes
it; the fields of other kinds must be left unset, and its own are checked by its kind's
config model, which is also what is stored (a JSON column beside the encrypted key).

The key is write-only: it is stored encrypted and read back only inside the activity that
uses it, so it is never part of an integration's public view or of history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv6Address, ip_address
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from baton.domain.egress import EgressPolicy
from baton.domain.mail import email_address
from baton.domain.models import ANTHROPIC_PROVIDER, OPENAI_PROVIDER
from baton.domain.tools import IDENTIFIER
from baton.errors import InvalidInput


class IntegrationKind(StrEnum):
    # Any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM. An LLM
    # kind is the provider of the model refs it serves (`openai:gpt-4o-mini`).
    openai = OPENAI_PROVIDER
    anthropic = ANTHROPIC_PROVIDER
    # A Model Context Protocol server, whose tools become steps and agents' tools.
    mcp = "mcp"
    # A Slack app: its bot posts (`slack_post` steps), its events start tasks.
    slack = "slack"
    # An SMTP server that `email_send` steps send through.
    smtp = "smtp"


class Offer(StrEnum):
    """What an integration of a kind gives a project."""

    models = "models"
    embeddings = "embeddings"
    tools = "tools"
    steps = "steps"
    triggers = "triggers"


class LlmProviderConfig(BaseModel):
    """An LLM provider's endpoint."""

    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl | None = Field(
        default=None, description="The provider's endpoint; its public API when unset"
    )
    default: bool = Field(
        default=False,
        description="Used for models of its kind when an agent or step names no integration "
        "and the project has several of that kind",
    )


class McpTransport(StrEnum):
    # A process the worker starts, spoken to over its stdin and stdout.
    stdio = "stdio"
    # Streamable HTTP.
    http = "http"


def _one_transport_schema(schema: dict[str, Any]) -> None:
    schema["if"] = {"properties": {"transport": {"const": "stdio"}}}
    schema["then"] = {"required": ["command"], "not": {"required": ["url"]}}
    schema["else"] = {"required": ["url"], "not": {"required": ["command"]}}


class McpConfig(BaseModel):
    """An MCP server: a process on the worker (stdio), or an endpoint (http)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_transport_schema)

    transport: McpTransport = Field(
        description="stdio: a process the worker starts (only when the operator allows it, "
        "BATON_MCP_STDIO_ENABLED); http: a streamable HTTP endpoint"
    )
    command: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="stdio: the server's executable, an absolute path or a name looked up on "
        "the worker's PATH",
    )
    args: list[str] = Field(
        default_factory=list, max_length=100, description="stdio: the command's arguments"
    )
    url: HttpUrl | None = Field(
        default=None,
        description="http: the server's endpoint (https://.../mcp); the API key, if any, is "
        "sent as `Authorization: Bearer`",
    )

    @model_validator(mode="after")
    def _what_its_transport_needs(self) -> McpConfig:
        if self.transport is McpTransport.stdio:
            if self.command is None or self.url is not None:
                raise ValueError("a stdio MCP server has a command (and args), not a url")
        elif self.url is None or self.command is not None or self.args:
            raise ValueError("an http MCP server has a url, not a command or args")
        return self


@dataclass(frozen=True)
class McpServer:
    """How to reach one server, key included: built where it is used (an activity, the
    API's connection test), never an argument or a result of an activity."""

    name: str
    transport: McpTransport
    command: str | None = None
    args: tuple[str, ...] = ()
    url: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    @property
    def where(self) -> str:
        """The server as an error names it: never its key."""
        target = self.url if self.transport is McpTransport.http else self.command
        return f"MCP server {self.name!r} ({target})"


SLACK_API = "https://slack.com/api/"


class SlackConfig(BaseModel):
    """A Slack app's Web API endpoint; its bot token and signing secret are its secrets."""

    model_config = ConfigDict(extra="forbid")

    base_url: HttpUrl | None = Field(
        default=None, description=f"The Slack Web API's base URL; {SLACK_API} when unset"
    )


@dataclass(frozen=True)
class SlackApp:
    """How to reach one Slack app, secrets included: built where it is used (an activity,
    the API's connection test, the events route), never an argument or a result of an
    activity."""

    name: str
    base_url: str
    bot_token: SecretStr = field(repr=False)
    signing_secret: SecretStr = field(repr=False)
    egress: EgressPolicy = field(default_factory=EgressPolicy)


class SmtpConfig(BaseModel):
    """An SMTP server that mail is sent through (a relay or a provider's submission port)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253, description="The server's host name or IP")
    port: int = Field(default=587, ge=1, le=65535, description="Usually 587 (submission)")
    starttls: bool = Field(
        default=True, description="Upgrade the connection with STARTTLS before logging in"
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=320,
        description="Logs in with it and the password (api_key); no login when unset",
    )
    from_address: str = Field(
        min_length=3, max_length=320, description="The sender of the mail Baton sends"
    )

    @field_validator("from_address")
    @classmethod
    def _an_address(cls, value: str) -> str:
        return email_address(value)

    @field_validator("host")
    @classmethod
    def _a_host(cls, value: str) -> str:
        if any(c in value for c in "/@:[] ") and not _is_ipv6_literal(value):
            raise ValueError(f"{value!r} is a host name or an IP address, no more")
        return value


def _is_ipv6_literal(host: str) -> bool:
    try:
        return isinstance(ip_address(host), IPv6Address)
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpServer:
    """How to reach one SMTP server, password included: built where it is used (the step's
    activity, the API's connection test), never an argument or a result of an activity."""

    name: str
    host: str
    port: int
    starttls: bool
    from_address: str
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    @property
    def where(self) -> str:
        """The server as an error names it: never its password."""
        return f"SMTP server {self.name!r} ({self.host}:{self.port})"


API_KEY = "api_key"
BOT_TOKEN = "bot_token"
SIGNING_SECRET = "signing_secret"


@dataclass(frozen=True)
class KindInfo:
    kind: IntegrationKind
    title: str
    description: str
    # Validates and is stored as the integration's config.
    config: type[BaseModel]
    offers: frozenset[Offer]
    # The fields stored encrypted and never returned, each with what it is.
    secrets: Mapping[str, str]
    # Whether an integration of the kind cannot be made without its secrets.
    secrets_required: bool = False

    def json_schema(self) -> dict[str, Any]:
        """The body that creates an integration of this kind: name, kind, its config's fields
        and its secrets (`writeOnly`)."""
        config = self.config.model_json_schema()
        properties: dict[str, Any] = {
            "name": {"type": "string", "pattern": IDENTIFIER},
            "kind": {"const": self.kind.value},
            **config.get("properties", {}),
        }
        for name, description in self.secrets.items():
            properties[name] = {
                "type": "string",
                "minLength": 1,
                "writeOnly": True,
                "format": "password",
                "description": description,
            }
        schema: dict[str, Any] = {
            **config,
            "title": self.title,
            "description": self.description,
            "type": "object",
            "properties": properties,
            "required": [
                "name",
                "kind",
                *config.get("required", []),
                *(self.secrets if self.secrets_required else []),
            ],
            "additionalProperties": False,
        }
        return schema


_LLM_KEY = "The provider's API key; a local server may need none"

KINDS: Mapping[IntegrationKind, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            IntegrationKind.openai,
            title="OpenAI-compatible",
            description="OpenAI or any endpoint that speaks its API (vLLM, Ollama, "
            "llama.cpp server, LiteLLM): models `openai:<model>` and embeddings",
            config=LlmProviderConfig,
            offers=frozenset({Offer.models, Offer.embeddings}),
            secrets={API_KEY: _LLM_KEY},
        ),
        KindInfo(
            IntegrationKind.anthropic,
            title="Anthropic",
            description="Claude models `anthropic:<model>`",
            config=LlmProviderConfig,
            offers=frozenset({Offer.models}),
            secrets={API_KEY: _LLM_KEY},
        ),
        KindInfo(
            IntegrationKind.mcp,
            title="MCP server",
            description="A Model Context Protocol server over streamable HTTP or stdio: its "
            "tools as `mcp` steps of tools",
            config=McpConfig,
            offers=frozenset({Offer.tools, Offer.steps}),
            secrets={API_KEY: "http: sent as `Authorization: Bearer`; a stdio server gets none"},
        ),
        KindInfo(
            IntegrationKind.slack,
            title="Slack",
            description="A Slack app: `slack_post` steps post as its bot, and its events "
            "(mentions, direct messages) start tasks of an agent or a workforce",
            config=SlackConfig,
            offers=frozenset({Offer.steps, Offer.triggers}),
            secrets={
                BOT_TOKEN: "The bot's token (xoxb-...), sent as `Authorization: Bearer`",
                SIGNING_SECRET: "The app's signing secret, which checks that events come "
                "from Slack",
            },
            secrets_required=True,
        ),
        KindInfo(
            IntegrationKind.smtp,
            title="SMTP server",
            description="Sends mail: `email_send` steps of tools, through a relay or a "
            "provider's submission port",
            config=SmtpConfig,
            offers=frozenset({Offer.steps}),
            secrets={API_KEY: "The password, sent at login (AUTH) with the username"},
        ),
    )
}

MODEL_KINDS = frozenset(kind for kind, info in KINDS.items() if Offer.models in info.offers)


class IntegrationSpec(BaseModel):
    """Every kind's config fields, flat; only those of its own kind may be set."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER)
    kind: IntegrationKind
    # LLM providers and Slack
    base_url: HttpUrl | None = Field(
        default=None,
        description="LLM kinds: the provider's endpoint; its public API when unset. slack: "
        "the Web API's base URL",
    )
    default: bool = Field(
        default=False,
        description="LLM kinds: used for models of its kind when an agent or step names no "
        "integration and the project has several of that kind",
    )
    # MCP servers
    transport: McpTransport | None = Field(default=None, description="mcp: stdio or http")
    command: str | None = Field(
        default=None, min_length=1, max_length=4096, description="mcp stdio: the executable"
    )
    args: list[str] | None = Field(
        default=None, max_length=100, description="mcp stdio: its arguments"
    )
    url: HttpUrl | None = Field(default=None, description="mcp http: the server's endpoint")
    # SMTP servers
    host: str | None = Field(
        default=None, min_length=1, max_length=253, description="smtp: the server's host"
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="smtp: its port (587)")
    starttls: bool | None = Field(default=None, description="smtp: upgrade with STARTTLS")
    username: str | None = Field(
        default=None, min_length=1, max_length=320, description="smtp: the login, if any"
    )
    from_address: str | None = Field(
        default=None, min_length=3, max_length=320, description="smtp: the sender's address"
    )

    @model_validator(mode="after")
    def _only_its_kinds_fields(self) -> IntegrationSpec:
        own = set(KINDS[self.kind].config.model_fields)
        foreign = [
            name
            for name in CONFIG_FIELDS - own
            if getattr(self, name) != IntegrationSpec.model_fields[name].get_default()
        ]
        if foreign:
            raise ValueError(
                f"{', '.join(sorted(foreign))}: not a field of {self.kind.value} integrations, "
                f"whose fields are {', '.join(sorted(own))} (see GET /api/v1/integration-kinds)"
            )
        try:
            self.config()  # its kind's own rules
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
        return self

    def config(self) -> BaseModel:
        """The config of its kind: what is stored beside the key."""
        model = KINDS[self.kind].config
        fields = {name: getattr(self, name) for name in model.model_fields}
        return model.model_validate({k: v for k, v in fields.items() if v is not None})

    def smtp_destination(self) -> tuple[str, int] | None:
        """The host and port an SMTP integration connects to."""
        if self.kind is not IntegrationKind.smtp:
            return None
        config = self.config()
        assert isinstance(config, SmtpConfig)
        return config.host, config.port

    def endpoint(self) -> tuple[str, str] | None:
        """The URL Baton sends the key to, and the field that holds it."""
        for name in ("base_url", "url"):
            value = getattr(self, name)
            if value is not None:
                return name, str(value)
        return None

    @property
    def takes_key(self) -> bool:
        return not (self.kind is IntegrationKind.mcp and self.transport is McpTransport.stdio)


def pack_secrets(kind: IntegrationKind, given: Mapping[str, str]) -> str | None:
    """What is encrypted into an integration's one key column: the key itself for a kind
    whose one secret is `api_key`, else every secret of the kind as one JSON object (all
    are needed together: a Slack app's token alone cannot check its events)."""
    secrets = KINDS[kind].secrets
    if set(secrets) == {API_KEY}:
        return given.get(API_KEY)
    if not given:
        return None
    missing = [name for name in secrets if name not in given]
    if missing:
        raise InvalidInput(
            f"{missing[0]}: a {kind.value} integration needs {' and '.join(secrets)} together",
            details=[{"field": name, "message": "required"} for name in missing],
        )
    return json.dumps({name: given[name] for name in secrets})


def unpack_secrets(kind: IntegrationKind, stored: str | None) -> dict[str, str]:
    """The secrets `pack_secrets` stored (decrypted): activities and checks only."""
    if stored is None:
        return {}
    if set(KINDS[kind].secrets) == {API_KEY}:
        return {API_KEY: stored}
    unpacked: dict[str, str] = json.loads(stored)
    return unpacked


CONFIG_FIELDS = frozenset(IntegrationSpec.model_fields) - {"name", "kind"}


def _every_config_field_is_in_the_spec() -> None:
    for info in KINDS.values():
        missing = set(info.config.model_fields) - CONFIG_FIELDS
        if missing:
            raise RuntimeError(f"integration kind {info.kind}: {missing} not in IntegrationSpec")


_every_config_field_is_in_the_spec()
