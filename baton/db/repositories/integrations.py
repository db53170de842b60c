"""Project integrations. The key is encrypted with the settings' secret key; `reveal` and
`resolve_provider_config`, which decrypt it, are for activities only."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.repositories import agents as agent_repo
from baton.db.repositories import slack_triggers as slack_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import Integration, utcnow
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import (
    BOT_TOKEN,
    KINDS,
    MODEL_KINDS,
    SIGNING_SECRET,
    SLACK_API,
    IntegrationKind,
    IntegrationSpec,
    LlmProviderConfig,
    McpConfig,
    McpServer,
    McpTransport,
    SlackApp,
    SlackConfig,
    SmtpConfig,
    SmtpServer,
    unpack_secrets,
)
from baton.domain.llm import ProviderConfig
from baton.domain.tools import EmailSendStep, LlmStep, McpStep, SlackPostStep
from baton.errors import Conflict, InvalidInput, NotFound
from baton.security import SecretBox


async def create_integration(
    *,
    session: AsyncSession,
    box: SecretBox,
    project_id: str,
    spec: IntegrationSpec,
    key: str | None,
) -> Integration:
    row = Integration(
        project_id=project_id,
        name=spec.name,
        kind=spec.kind.value,
        config=_config_of(spec),
        key_ciphertext=box.encrypt(key) if key else None,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"an integration named {spec.name!r} already exists") from exc
    if spec.default:
        await _clear_other_defaults(session, row)
    return row


async def list_integrations(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[Integration]:
    query = select(Integration).where(Integration.project_id == project_id)
    order = (Integration.name,)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def get_integration(*, session: AsyncSession, project_id: str, ref: str) -> Integration:
    """By id or by name: both are unique within a project."""
    query = select(Integration).where(
        Integration.project_id == project_id,
        or_(Integration.id == ref, Integration.name == ref),
    )
    row = (await session.scalars(query)).first()
    if row is None:
        raise NotFound(f"integration {ref!r} not found")
    return row


async def update_integration(
    *,
    session: AsyncSession,
    box: SecretBox,
    row: Integration,
    spec: IntegrationSpec,
    key: str | None,
) -> Integration:
    """Replaces the name, kind and config; the key only when a new one is given."""
    row.name = spec.name
    row.kind = spec.kind.value
    row.config = _config_of(spec)
    if key:
        row.key_ciphertext = box.encrypt(key)
    row.updated_at = utcnow()
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"an integration named {spec.name!r} already exists") from exc
    if spec.default:
        await _clear_other_defaults(session, row)
    return row


async def delete_integration(*, session: AsyncSession, row: Integration) -> None:
    await session.delete(row)
    await session.flush()


def spec_of(row: Integration) -> IntegrationSpec:
    return IntegrationSpec.model_validate({**row.config, "name": row.name, "kind": row.kind})


def reveal(*, box: SecretBox, row: Integration) -> ProviderConfig:
    """The integration as a provider client needs it, key decrypted: activities only."""
    config = LlmProviderConfig.model_validate(row.config)
    key = box.decrypt(row.key_ciphertext) if row.key_ciphertext else None
    return ProviderConfig(
        api_key=SecretStr(key) if key else None,
        base_url=str(config.base_url) if config.base_url else None,
    )


def reveal_mcp_server(
    *, box: SecretBox, row: Integration, egress: EgressPolicy, stdio_enabled: bool
) -> McpServer:
    """An MCP integration as the client needs it, key decrypted: activities and the
    connection test only. A stdio server saved while the operator allowed them is refused
    once they no longer do (`stdio_enabled`)."""
    if row.kind != IntegrationKind.mcp:
        raise InvalidInput(f"integration {row.name!r} (kind {row.kind}) is not an MCP server")
    config = McpConfig.model_validate(row.config)
    if config.transport is McpTransport.stdio and not stdio_enabled:
        raise InvalidInput(
            f"MCP server {row.name!r} runs over stdio, which this server does not allow "
            "(BATON_MCP_STDIO_ENABLED=true allows it)"
        )
    key = box.decrypt(row.key_ciphertext) if row.key_ciphertext else None
    return McpServer(
        name=row.name,
        transport=config.transport,
        command=config.command,
        args=tuple(config.args),
        url=str(config.url) if config.url else None,
        api_key=SecretStr(key) if key else None,
        egress=egress,
    )


def reveal_slack_app(*, box: SecretBox, row: Integration, egress: EgressPolicy) -> SlackApp:
    """A Slack integration with its secrets decrypted: activities, the connection test and
    the events route only."""
    if row.kind != IntegrationKind.slack:
        raise InvalidInput(f"integration {row.name!r} (kind {row.kind}) is not a Slack app")
    config = SlackConfig.model_validate(row.config)
    secrets = unpack_secrets(
        IntegrationKind.slack, box.decrypt(row.key_ciphertext) if row.key_ciphertext else None
    )
    if not secrets:
        raise InvalidInput(f"Slack integration {row.name!r} has no bot token")
    return SlackApp(
        name=row.name,
        base_url=str(config.base_url) if config.base_url else SLACK_API,
        bot_token=SecretStr(secrets[BOT_TOKEN]),
        signing_secret=SecretStr(secrets[SIGNING_SECRET]),
        egress=egress,
    )


def reveal_smtp_server(*, box: SecretBox, row: Integration, egress: EgressPolicy) -> SmtpServer:
    """An SMTP integration as the client needs it, password decrypted: activities and the
    connection test only."""
    if row.kind != IntegrationKind.smtp:
        raise InvalidInput(f"integration {row.name!r} (kind {row.kind}) is not an SMTP server")
    config = SmtpConfig.model_validate(row.config)
    password = box.decrypt(row.key_ciphertext) if row.key_ciphertext else None
    return SmtpServer(
        name=row.name,
        host=config.host,
        port=config.port,
        starttls=config.starttls,
        from_address=config.from_address,
        username=config.username,
        password=SecretStr(password) if password else None,
        egress=egress,
    )


async def resolve_provider_config(
    *,
    session: AsyncSession,
    box: SecretBox,
    project_id: str,
    provider: str,
    integration: str | None,
) -> ProviderConfig | None:
    """The project's way to reach `provider`: the integration named, else its only
    integration of that kind, else the one marked default; None when the project has none
    of these (the caller falls back to the server's settings)."""
    if integration is not None:
        row = await get_integration(session=session, project_id=project_id, ref=integration)
        if row.kind != provider:
            raise InvalidInput(
                f"integration {integration!r} is for {row.kind} models, not {provider} ones"
            )
        return reveal(box=box, row=row)
    if provider not in {kind.value for kind in MODEL_KINDS}:
        return None
    query = select(Integration).where(
        Integration.project_id == project_id, Integration.kind == provider
    )
    rows = list((await session.scalars(query)).all())
    chosen = rows if len(rows) == 1 else [r for r in rows if r.config.get("default")]
    return reveal(box=box, row=chosen[0]) if len(chosen) == 1 else None


def _config_of(spec: IntegrationSpec) -> dict[str, Any]:
    return spec.config().model_dump(mode="json")


async def _clear_other_defaults(session: AsyncSession, row: Integration) -> None:
    """At most one default per kind, so the choice is never ambiguous."""
    query = select(Integration).where(
        Integration.project_id == row.project_id,
        Integration.kind == row.kind,
        Integration.id != row.id,
    )
    for other in (await session.scalars(query)).all():
        if other.config.get("default"):
            other.config = {**other.config, "default": False}
    await session.flush()


async def check_reference(
    *, session: AsyncSession, project_id: str, name: str, model: str, field: str
) -> None:
    """Refuses (422 naming `field`) an agent or step that names an integration the project
    does not have, or one for another provider than its model's."""
    try:
        row = await get_integration(session=session, project_id=project_id, ref=name)
    except NotFound as exc:
        raise InvalidInput(
            f"{field}: no integration {name!r} in this project",
            details=[{"field": field, "message": "unknown integration"}],
        ) from exc
    provider = model.partition(":")[0]
    if row.kind not in MODEL_KINDS:
        raise InvalidInput(
            f"{field}: integration {name!r} (kind {row.kind}) serves no models",
            details=[{"field": field, "message": "not an LLM integration"}],
        )
    if row.kind != provider:
        raise InvalidInput(
            f"{field}: integration {name!r} is for {row.kind} models, not {model!r}",
            details=[{"field": field, "message": "integration of another provider"}],
        )


async def check_mcp_reference(
    *, session: AsyncSession, project_id: str, name: str, field: str
) -> None:
    """Refuses (422 naming `field`) a step or agent that names no MCP integration of the
    project."""
    await check_kind_reference(
        session=session, project_id=project_id, name=name, field=field, kind=IntegrationKind.mcp
    )


async def check_kind_reference(
    *, session: AsyncSession, project_id: str, name: str, field: str, kind: IntegrationKind
) -> None:
    """Refuses (422 naming `field`) a step or agent that names no integration of `kind` in
    the project."""
    try:
        row = await get_integration(session=session, project_id=project_id, ref=name)
    except NotFound as exc:
        raise InvalidInput(
            f"{field}: no integration {name!r} in this project",
            details=[{"field": field, "message": "unknown integration"}],
        ) from exc
    if row.kind != kind:
        title = KINDS[kind].title
        raise InvalidInput(
            f"{field}: integration {name!r} (kind {row.kind}) is not an {title}",
            details=[{"field": field, "message": f"not an {kind.value} integration"}],
        )


async def check_slack_reference(
    *, session: AsyncSession, project_id: str, name: str, field: str
) -> Integration:
    """The project's Slack integration `name` (by name or id); refused (422 naming `field`)
    when the project has no Slack integration of that name."""
    try:
        row = await get_integration(session=session, project_id=project_id, ref=name)
    except NotFound as exc:
        raise InvalidInput(
            f"{field}: no integration {name!r} in this project",
            details=[{"field": field, "message": "unknown integration"}],
        ) from exc
    if row.kind != IntegrationKind.slack:
        raise InvalidInput(
            f"{field}: integration {name!r} (kind {row.kind}) is not a Slack app",
            details=[{"field": field, "message": "not a Slack integration"}],
        )
    return row


async def users_of(*, session: AsyncSession, project_id: str, name: str) -> list[str]:
    """The agents and tools whose current definition names the integration (for their model,
    an MCP attachment or a step), and the Slack events URLs that use it."""
    users = [
        f"agent {agent.name!r}"
        for agent in (await agent_repo.list_agents(session=session, project_id=project_id)).items
        if agent.spec.get("integration") == name
        or any(attached.get("integration") == name for attached in agent.spec.get("mcp", []))
    ]
    for tool, spec in (await tool_repo.current_specs(session=session, project_id=project_id)).items:
        named = (LlmStep, McpStep, SlackPostStep, EmailSendStep)
        if any(isinstance(s, named) and s.integration == name for s in spec.steps):
            users.append(f"tool {tool.name!r}")
    row = (
        await session.scalars(
            select(Integration).where(
                Integration.project_id == project_id, Integration.name == name
            )
        )
    ).first()
    if row is not None:
        users += await slack_repo.integration_users(session=session, integration_id=row.id)
    return users


async def reencrypt_keys(*, session: AsyncSession, box: SecretBox) -> int:
    """Every integration's key re-encrypted under the box's current key (a key rotation)."""
    rows = (
        await session.scalars(select(Integration).where(Integration.key_ciphertext.is_not(None)))
    ).all()
    for row in rows:
        assert row.key_ciphertext is not None
        row.key_ciphertext = box.rotate(row.key_ciphertext)
    return len(rows)
