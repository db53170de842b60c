"""The catalog of integration kinds: what each asks for (a JSON Schema, its secret fields
marked) and what it gives a project. The same for every project."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PageDep, PrincipalDep
from api.schemas.integrations import IntegrationKindPublic
from api.schemas.paging import Page
from baton.db.paging import page_of_list
from baton.domain.integrations import KINDS

router = APIRouter(prefix="/api/v1", tags=["integrations"])


@router.get("/integration-kinds")
async def list_integration_kinds(_: PrincipalDep, page: PageDep) -> Page[IntegrationKindPublic]:
    """By kind; any valid token may read it."""
    kinds = page_of_list(list(KINDS.values()), lambda info: info.kind.value, page)
    return Page[IntegrationKindPublic].of(kinds, IntegrationKindPublic.of)
