"""A tenant: an organisation of its own with one project and an owner's token, so tests that
share the database never see each other's rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import accounts
from baton.db.tables import Organization
from baton.settings import Settings


@dataclass(frozen=True)
class Tenant:
    org_id: int
    project_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.token)

    def url(self, path: str = "") -> str:
        return f"/api/v1/projects/{self.project_id}{path}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


async def new_tenant(session_factory: async_sessionmaker[AsyncSession]) -> Tenant:
    async with session_factory.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Test org", project_name="Test project"
        )
    return Tenant(org_id=created.org.id, project_id=created.project.id, token=created.token)


async def on_plan(
    session_factory: async_sessionmaker[AsyncSession], tenant: Tenant, plan: str
) -> Tenant:
    """The tenant, its organisation moved to `plan` (one of the test's plans file) straight
    in the database."""
    async with session_factory.begin() as session:
        await session.execute(
            update(Organization).where(Organization.id == tenant.org_id).values(plan=plan)
        )
    return tenant


def with_plans(settings: Settings, tmp_path: Path, plans: str, **update: Any) -> Settings:
    """The settings, with `update`, on a plans file of the YAML `plans` (written in the
    test's `tmp_path`), whose plans `on_plan` moves organisations to."""
    plans_file = tmp_path / "plans.yaml"
    plans_file.write_text(plans)
    return settings.model_copy(update={"plans_file": plans_file, **update})
