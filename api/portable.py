"""What the agents, tools and workforces routes share to export, import and clone: the
document's response in JSON or YAML, reading an import body, the clone's target project, and
the audit entry each records. The documents themselves are `baton.services.portable`'s."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, cast

import yaml
from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from api.limits import load_definition
from baton.db.repositories import accounts
from baton.db.repositories import audit as audit_repo
from baton.db.tables import Project
from baton.domain.accounts import Principal
from baton.domain.audit import Actor, AuditAction, Target
from baton.services import portable
from baton.services.portable import Definition, Imported

D = TypeVar("D", bound=Definition)

Format = Annotated[
    Literal["json", "yaml"], Query(description="The document's format: json or yaml")
]


class CloneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: str | None = Field(
        default=None,
        max_length=100,
        description="The project of the same organisation to clone into; by default this "
        "one (the copy is then named '<name> (copy)')",
    )


def document_response(document: dict[str, Any], format: str) -> Response:
    if format == "yaml":
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return Response(text, media_type="application/yaml")
    return JSONResponse(document)


async def read_import(request: Request) -> Any:
    """The body of an import: JSON when `Content-Type` says JSON, else YAML, bounded (no
    anchors or aliases, a limit on values and depth) before anything is built from it."""
    return load_definition(await request.body(), request.headers.get("content-type", ""))


async def import_document(
    *, session: AsyncSession, project: Project, actor: Actor, data: Any, into: type[D]
) -> D:
    """Creates what a document of `into`'s kind defines, with what it brings."""
    document = portable.read_document(data, portable.KINDS[into])
    imported = await portable.import_document(
        session=session, project_id=project.id, document=document
    )
    await _record(session, AuditAction.definition_imported, project, actor, imported, {})
    return cast(D, imported.row)


async def clone(
    *,
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    project: Project,
    row: D,
    body: CloneRequest | None,
) -> D:
    """Clones `row` into the body's project: one the caller's token reaches in the same
    organisation, else 404 as if it did not exist (the route's role check holds for both)."""
    target = project
    if body is not None and body.project_id not in (None, project.id):
        target = await accounts.get_project(
            session=session, principal=principal, project_id=body.project_id
        )
    imported = await portable.clone(session=session, row=row, project_id=target.id)
    source = {"from_project_id": project.id, "from_id": row.id}
    await _record(session, AuditAction.definition_cloned, target, actor, imported, source)
    return cast(D, imported.row)


async def _record(
    session: AsyncSession,
    action: AuditAction,
    project: Project,
    actor: Actor,
    imported: Imported,
    source: dict[str, str],
) -> None:
    kind = portable.kind_of(imported.row)
    await audit_repo.record(
        session=session,
        org_id=project.org_id,
        project_id=project.id,
        actor=actor,
        action=action,
        target=Target(kind, imported.row.id),
        detail={
            "kind": kind,
            "name": imported.row.name,
            **source,
            "tools_created": imported.tools_created,
            "agents_created": imported.agents_created,
        },
    )
