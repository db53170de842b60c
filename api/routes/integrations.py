"""Project integrations: how a project's agents and steps reach a provider or an MCP server
with the project's own key. The key is written, replaced and used, never read back, and never
sent to an address it was not entered for: a base URL or MCP url passes the egress guard when
it is saved (and again at every connection), and a new address or kind needs the key again.
An MCP server over stdio is a process on the worker: refused unless the operator allows it
(BATON_MCP_STDIO_ENABLED), and its command must exist when it is saved. Creating, changing
and deleting one is audited by name and kind, and for a change the fields it changed (never
their values, never the key: only whether one was given)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import (
    ActorDep,
    Admin,
    Editor,
    PageDep,
    ProjectDep,
    SessionDep,
    SettingsDep,
    Viewer,
    get_project,
)
from api.schemas.integrations import (
    SECRET_FIELDS,
    IntegrationCreate,
    IntegrationPublic,
    IntegrationTestResult,
    IntegrationUpdate,
)
from api.schemas.paging import Page
from baton.db.repositories import audit
from baton.db.repositories import integrations as integration_repo
from baton.db.tables import Integration
from baton.domain.audit import Actor, AuditAction, Detail, Target
from baton.domain.integrations import (
    KINDS,
    IntegrationSpec,
    McpTransport,
    pack_secrets,
)
from baton.errors import Conflict, InvalidInput
from baton.integrations import http, mcp
from baton.security import SecretBox
from baton.services.integration_checks import check_integration
from baton.settings import Settings

router = APIRouter(
    prefix="/api/v1/projects/{project_id}/integrations",
    tags=["integrations"],
    dependencies=[Depends(get_project)],
)


@router.get("")
async def list_integrations(
    project: ProjectDep, session: SessionDep, _: Viewer, page: PageDep
) -> Page[IntegrationPublic]:
    """By name."""
    rows = await integration_repo.list_integrations(
        session=session, project_id=project.id, page=page
    )
    return Page[IntegrationPublic].of(rows, IntegrationPublic.of)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_integration(
    body: IntegrationCreate,
    request: Request,
    settings: SettingsDep,
    project: ProjectDep,
    session: SessionDep,
    _: Admin,
    actor: ActorDep,
) -> IntegrationPublic:
    """A base URL, MCP url or SMTP host that resolves to a loopback, private or link-local
    address is a 422 unless the operator allows it (BATON_HTTP_ALLOW_HOSTS,
    BATON_HTTP_ALLOW_NETWORKS)."""
    spec = IntegrationSpec.model_validate(body.model_dump(exclude=set(SECRET_FIELDS)))
    given = body.secrets_given()
    await _check_usable(spec, settings, secrets_given=given)
    _require_secrets(spec, given)
    row = await integration_repo.create_integration(
        session=session,
        box=_box(request),
        project_id=project.id,
        spec=spec,
        key=pack_secrets(spec.kind, given),
    )
    detail: Detail = {"secrets_given": ",".join(sorted(given))}
    await _audit(session, actor, AuditAction.integration_created, row, project.org_id, detail)
    return IntegrationPublic.of(row)


@router.get("/{ref}")
async def get_integration(
    ref: str, project: ProjectDep, session: SessionDep, _: Viewer
) -> IntegrationPublic:
    """`ref` is the integration's id or its name."""
    row = await integration_repo.get_integration(session=session, project_id=project.id, ref=ref)
    return IntegrationPublic.of(row)


@router.patch("/{ref}")
async def update_integration(
    ref: str,
    body: IntegrationUpdate,
    request: Request,
    settings: SettingsDep,
    project: ProjectDep,
    session: SessionDep,
    _: Admin,
    actor: ActorDep,
) -> IntegrationPublic:
    """A new name is refused while agents or tools use the old one. A new base URL or kind
    with a stored key needs that key in the same request: whoever may edit an integration
    must not be able to point it at a server of their own and receive the key."""
    row = await integration_repo.get_integration(session=session, project_id=project.id, ref=ref)
    current = integration_repo.spec_of(row)
    changes = body.model_dump(exclude_unset=True, exclude=set(SECRET_FIELDS))
    spec = IntegrationSpec.model_validate({**current.model_dump(), **changes})
    given = body.secrets_given()
    moved = [
        name
        # starttls too: turning it off would send the stored password in clear.
        for name in ("base_url", "url", "host", "port", "starttls", "kind")
        if getattr(spec, name) != getattr(current, name)
    ]
    if moved and spec.takes_key and row.key_ciphertext is not None and not given:
        fields = " and ".join(KINDS[spec.kind].secrets)
        raise InvalidInput(
            f"changing an integration's {' and '.join(moved)} needs its key: re-enter the key "
            f"({fields}) in the same request, so the stored one is never sent to a new address",
            details=[
                {"field": name, "message": "re-enter the key"} for name in KINDS[spec.kind].secrets
            ],
        )
    await _check_usable(spec, settings, secrets_given=given)
    if spec.name != current.name or spec.kind != current.kind:
        await _refuse_if_used(session, project.id, current.name, "renamed or change its kind")
    row = await integration_repo.update_integration(
        session=session,
        box=_box(request),
        row=row,
        spec=spec,
        key=pack_secrets(spec.kind, given),
    )
    changed = sorted(name for name in changes if getattr(spec, name) != getattr(current, name))
    detail: Detail = {"changed": ",".join(changed), "secrets_given": ",".join(sorted(given))}
    await _audit(session, actor, AuditAction.integration_updated, row, project.org_id, detail)
    return IntegrationPublic.of(row)


@router.post("/{ref}/test")
async def test_integration(
    ref: str,
    request: Request,
    settings: SettingsDep,
    project: ProjectDep,
    session: SessionDep,
    _: Editor,
) -> IntegrationTestResult:
    """Connects as its calls will, with the stored key: an LLM kind lists its models, an MCP
    server is initialised and lists its tools. Always 200 when the integration exists: `ok`
    says whether it answered, `error` what failed (never the key)."""
    row = await integration_repo.get_integration(session=session, project_id=project.id, ref=ref)
    await session.commit()  # no transaction held open while a remote server answers
    check = await check_integration(
        row=row,
        box=_box(request),
        egress=http.EgressPolicy.from_settings(settings),
        stdio_enabled=settings.mcp_stdio_enabled,
    )
    return IntegrationTestResult(**dataclasses.asdict(check))


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_integration(
    ref: str, project: ProjectDep, session: SessionDep, _: Admin, actor: ActorDep
) -> None:
    """Refused (409) while an agent or a tool names the integration: their next task or run
    would fail. One used only by default can go; models then use the server's key."""
    row = await integration_repo.get_integration(session=session, project_id=project.id, ref=ref)
    await _refuse_if_used(session, project.id, row.name, "deleted")
    await _audit(session, actor, AuditAction.integration_deleted, row, project.org_id, {})
    await integration_repo.delete_integration(session=session, row=row)


async def _audit(
    session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    row: Integration,
    org_id: int,
    detail: Detail,
) -> None:
    await audit.record(
        session=session,
        org_id=org_id,
        project_id=row.project_id,
        actor=actor,
        action=action,
        target=Target("integration", row.id),
        detail={"name": row.name, "kind": row.kind, **detail},
    )


async def _check_usable(
    spec: IntegrationSpec, settings: Settings, *, secrets_given: dict[str, str]
) -> None:
    if secrets_given and not spec.takes_key:
        raise InvalidInput(
            "api_key: a stdio MCP server is given no key",
            details=[{"field": "api_key", "message": "not used by a stdio server"}],
        )
    for name in secrets_given:
        if name not in KINDS[spec.kind].secrets:
            own = ", ".join(KINDS[spec.kind].secrets)
            raise InvalidInput(
                f"{name}: not a secret of {spec.kind.value} integrations, whose secrets are {own}",
                details=[{"field": name, "message": f"not a {spec.kind.value} secret"}],
            )
    endpoint = spec.endpoint()
    if endpoint is not None:
        field, url = endpoint
        try:
            await http.check_destination(url, policy=http.EgressPolicy.from_settings(settings))
        except http.BlockedDestination as exc:
            raise http.BlockedDestination(
                f"{field}: {exc.message}", details=[{"field": field, "message": exc.message}]
            ) from exc
    destination = spec.smtp_destination()
    if destination is not None:
        host, port = destination
        try:
            await http.check_host(host, port, policy=http.EgressPolicy.from_settings(settings))
        except http.BlockedDestination as exc:
            raise http.BlockedDestination(
                f"host: {exc.message}", details=[{"field": "host", "message": exc.message}]
            ) from exc
    if spec.transport is McpTransport.stdio:
        if not settings.mcp_stdio_enabled:
            raise InvalidInput(
                "transport: an MCP server over stdio is a process on the worker, with its "
                "rights; this server does not allow them (its operator may, with "
                "BATON_MCP_STDIO_ENABLED=true)",
                details=[{"field": "transport", "message": "stdio is not enabled"}],
            )
        assert spec.command is not None
        mcp.find_command(spec.command)


def _require_secrets(spec: IntegrationSpec, given: dict[str, str]) -> None:
    """A kind that cannot work without its secrets (a Slack app) is refused without them."""
    if KINDS[spec.kind].secrets_required:
        for name in KINDS[spec.kind].secrets:
            if name not in given:
                raise InvalidInput(
                    f"{name}: a slack integration needs it",
                    details=[{"field": name, "message": "required"}],
                )


async def _refuse_if_used(session: SessionDep, project_id: str, name: str, action: str) -> None:
    users = await integration_repo.users_of(session=session, project_id=project_id, name=name)
    if users:
        raise Conflict(
            f"integration {name!r} is used by {', '.join(users)}; it cannot be {action} "
            "until they name another",
            details={"used_by": users},
        )


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box
