"""A tenant: an organisation of its own with one project and an owner's token, so tests that
share the database never see each other's rows."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import accounts


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
