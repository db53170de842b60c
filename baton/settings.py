"""The one settings object. Every value comes from `BATON_*` environment variables (or a
`.env` file the caller names); nothing else reads the environment."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import ip_network
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton.domain.credits import ROWS_PER_IMPORT_CEILING, UPLOAD_CEILING_BYTES
from baton.domain.egress import parse_host_entry
from baton.secret_key import key_file, read_keys

# The key earlier versions shipped in .env.example: public, so refused wherever it turns up.
DEVELOPMENT_SECRET_KEY = "baton-development-secret-key-do-not-use-in-production"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class MissingSecretKey(RuntimeError):
    """No key to encrypt secrets with: neither BATON_SECRET_KEY nor a key file."""


class Environment(StrEnum):
    development = "development"
    production = "production"


class CodeSandbox(StrEnum):
    bwrap = "bwrap"  # bubblewrap: see baton/integrations/sandbox.py
    none = "none"  # a bare child process with limits: development only


class Settings(BaseSettings):
    # Empty variables count as unset, so a copied .env.example changes nothing.
    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore", env_ignore_empty=True)

    environment: Environment = Environment.development
    data_dir: Path = Path(".baton")
    # Empty means a SQLite file under the data dir; `postgresql+asyncpg://...` for PostgreSQL.
    database_url: str = ""
    # How long a write waits for SQLite's lock before the API answers 503 (Retry-After).
    sqlite_busy_timeout_seconds: float = Field(default=15.0, gt=0, le=600)

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "baton"
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_tls_ca_path: Path | None = None
    temporal_api_key: SecretStr | None = None
    temporal_ui_url: str = "http://localhost:8233"

    # Encrypts stored secrets and Temporal payloads. Unset: the data dir's key file, which
    # `baton up` creates on first start. Previous keys still decrypt what they encrypted.
    secret_key: SecretStr | None = None
    previous_secret_keys: list[SecretStr] = []

    # LLM providers for the whole installation. A base URL points the `openai` provider at any
    # OpenAI-compatible server (vLLM, Ollama, llama.cpp, LiteLLM), which may need no key.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None

    # Plans and credits: the plan a new organisation starts on (one Baton serving one team
    # wants no limit; one serving many sets `free`), and a YAML file of plans that replaces
    # or adds to the built-in ones (baton/domain/credits.py).
    default_plan: str = "enterprise"
    plans_file: Path | None = None
    # Off, the installation keeps no ledger: nothing is checked against credits or charged
    # (a single team that needs no metering); the plans' other limits still apply.
    metering: bool = True
    # Vendor credits per 1,000 tokens of each `provider:model`, replacing or adding to the
    # built-in list prices (a YAML mapping; baton/domain/credits.py).
    model_prices_file: Path | None = None

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_public_url: str = ""
    # Larger request bodies are refused with 413 before they are read whole. Knowledge imports
    # (file uploads) get the upload limit; every other route takes JSON and the body limit.
    # The upload limit and the rows of one import are ceilings: an organisation's plan may
    # allow less, never more (baton/domain/credits.py, PlanBook.limits).
    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    max_upload_bytes: int = Field(default=UPLOAD_CEILING_BYTES, gt=0)
    max_rows_per_import: int = Field(default=ROWS_PER_IMPORT_CEILING, gt=0)

    # What one share link may start (conversations, messages, tool runs) per minute, for
    # all its visitors together: a link is public, so it is bounded whoever holds it.
    share_link_requests_per_minute: int = Field(default=30, ge=1)
    # Which sites may frame the embed pages and the user-group dashboard: a CSP source list
    # (`https://shop.example.com https://*.example.org`); `*` is any site.
    embed_frame_ancestors: str = Field(default="*", min_length=1, pattern=r"^[^;,\r\n]+$")

    # `/mcp` (Baton as an MCP server): how long a tool call waits for its run, or an
    # `ask_<agent>` call for the agent's answer, before it answers with the id to poll.
    mcp_wait_seconds: float = Field(default=60.0, ge=0, le=600)

    # Code steps run user Python in a bubblewrap sandbox with these limits (see
    # baton/integrations/sandbox.py); `none` runs it unsandboxed, which production refuses.
    # false turns code steps off.
    code_steps_enabled: bool = True
    code_sandbox: CodeSandbox = CodeSandbox.bwrap
    code_bwrap_path: str = "bwrap"  # a name looked up on PATH, or a path
    code_cpu_seconds: float = Field(default=5.0, gt=0)
    code_memory_mb: int = Field(default=256, gt=0)
    code_wall_seconds: float = Field(default=30.0, gt=0)

    # Tool runs (every tool call) skip the workflow sandbox for speed; their code is pure. True
    # runs them in the sandbox too, which catches a non-deterministic call: the tests do.
    sandbox_all_workflows: bool = False

    # HTTP steps, URL imports and project integrations' base URLs refuse private, loopback
    # and link-local addresses unless allowed here. A host entry is `host` (ports 80 and 443
    # only) or `host:port`; a network allows all its ports. JSON lists in the environment:
    # BATON_HTTP_ALLOW_HOSTS='["llm.internal:8080"]', BATON_HTTP_ALLOW_NETWORKS='["10.1.0.0/16"]'.
    http_allow_hosts: list[str] = []
    http_allow_networks: list[str] = []

    # MCP integrations over stdio start a process on the worker, with its rights: refused
    # unless the operator turns them on.
    mcp_stdio_enabled: bool = False

    @field_validator("http_allow_hosts")
    @classmethod
    def _hosts_are_host_or_host_port(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            try:
                parse_host_entry(host)
            except ValueError as exc:
                raise ValueError(f"BATON_HTTP_ALLOW_HOSTS: {exc}") from None
        return [host.strip() for host in hosts]

    @field_validator("http_allow_networks")
    @classmethod
    def _networks_are_cidrs(cls, networks: list[str]) -> list[str]:
        parsed = []
        for network in networks:
            try:
                parsed.append(str(ip_network(network.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"BATON_HTTP_ALLOW_NETWORKS: {network!r} is not a network in CIDR "
                    "notation, such as 10.1.0.0/16 or fd00::/8"
                ) from None
        return parsed

    @model_validator(mode="after")
    def _secret_key_from_file_and_safe(self) -> Self:
        if self.secret_key is None:
            keys = read_keys(key_file(self.data_dir))
            if keys:
                self.secret_key = SecretStr(keys[0])
                self.previous_secret_keys = [*self.previous_secret_keys, *map(SecretStr, keys[1:])]
        for key in filter(None, [self.secret_key, *self.previous_secret_keys]):
            if key.get_secret_value() == DEVELOPMENT_SECRET_KEY:
                raise ValueError(
                    "BATON_SECRET_KEY is the public development key that older versions put in "
                    ".env.example; remove it (`baton up` then creates a random key in the data "
                    "dir) or set a long random value, for example "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
            if len(key.get_secret_value()) < 16:
                raise ValueError("BATON_SECRET_KEY must be at least 16 characters long")
        return self

    def require_secret_key(self) -> str:
        if self.secret_key is None:
            raise MissingSecretKey(
                "no secret key: set BATON_SECRET_KEY, or start once with `baton up`, which "
                f"creates {key_file(self.data_dir)}"
            )
        return self.secret_key.get_secret_value()

    def previous_secret_key_values(self) -> list[str]:
        return [key.get_secret_value() for key in self.previous_secret_keys]

    @model_validator(mode="after")
    def _refuse_unsandboxed_code_in_production(self) -> Self:
        if (
            self.environment is Environment.production
            and self.code_steps_enabled
            and self.code_sandbox is CodeSandbox.none
        ):
            raise ValueError(
                "BATON_CODE_SANDBOX=none runs code steps with the worker's own access to files "
                "and the network, which production refuses; install the Debian/Ubuntu package "
                "`bubblewrap` and set BATON_CODE_SANDBOX=bwrap, or turn code steps off with "
                "BATON_CODE_STEPS_ENABLED=false"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'baton.db').resolve()}"

    @property
    def public_api_url(self) -> str:
        return self.api_public_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def temporal_codec_endpoint(self) -> str:
        """Where the Temporal UI sends payloads to decode. With both on this machine, the API
        is named by the UI's own host name, so the browser counts them as one site and sends
        the codec's SameSite session cookie along."""
        if self.api_public_url:
            return f"{self.api_public_url.rstrip('/')}/api/temporal-codec"
        host = self.api_host
        ui_host = urlsplit(self.temporal_ui_url).hostname or ""
        if host in LOOPBACK_HOSTS and ui_host in LOOPBACK_HOSTS:
            host = ui_host
        return f"http://{host}:{self.api_port}/api/temporal-codec"

    def temporal_ui_link(self, workflow_id: str) -> str:
        base = self.temporal_ui_url.rstrip("/")
        return f"{base}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
