"""Workforce definitions: saved, versioned, listed and deleted per project."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db.repositories import workforces as workforce_repo
from baton.db.tables import Workforce
from baton.domain.workforces import EdgeKind, WorkforceSpec
from baton.errors import NotFound
from tests.conftest import Tenant


def chain_spec(name: str = "Support") -> WorkforceSpec:
    return WorkforceSpec.model_validate(
        {
            "name": name,
            "nodes": [
                {"id": "triage", "type": "agent", "agent_id": "a1"},
                {"id": "reply", "type": "agent", "agent_id": "a2"},
            ],
            "edges": [{"from": "triage", "to": "reply"}],
            "entry": "triage",
        }
    )


async def test_a_saved_workforce_keeps_every_version_and_stays_in_its_project(
    session_factory: async_sessionmaker[AsyncSession], tenant: Tenant, other_tenant: Tenant
) -> None:
    async with session_factory.begin() as session:
        created = await workforce_repo.create_workforce(
            session=session, project_id=tenant.project_id, spec=chain_spec()
        )
        workforce_id = created.id
    async with session_factory.begin() as session:
        changed = chain_spec("Support v2").model_copy(update={"max_node_runs": 7})
        updated = await workforce_repo.update_workforce(
            session=session,
            project_id=tenant.project_id,
            workforce_id=workforce_id,
            spec=changed,
        )
        assert (updated.version, updated.name) == (2, "Support v2")
    async with session_factory() as session:
        row = await workforce_repo.get_workforce(
            session=session, project_id=tenant.project_id, workforce_id=workforce_id
        )
        current = workforce_repo.workforce_spec(row)
        assert current.max_node_runs == 7
        assert current.edges[0].from_ == "triage"
        assert current.edges[0].kind is EdgeKind.handover
        first = await workforce_repo.version_spec(
            session=session, workforce_id=workforce_id, version=1
        )
        assert first is not None and first.name == "Support"
        assert first.max_node_runs == 100
        assert (
            await workforce_repo.version_spec(session=session, workforce_id=workforce_id, version=3)
            is None
        )
        versions = await workforce_repo.list_versions(session=session, workforce_id=workforce_id)
        assert [v.version for v in versions.items] == [1, 2]
        listed = await workforce_repo.list_workforces(session=session, project_id=tenant.project_id)
        assert [w.id for w in listed.items] == [workforce_id]
        elsewhere = await workforce_repo.list_workforces(
            session=session, project_id=other_tenant.project_id
        )
        assert elsewhere.items == []
        with pytest.raises(NotFound):
            await workforce_repo.get_workforce(
                session=session, project_id=other_tenant.project_id, workforce_id=workforce_id
            )
    async with session_factory.begin() as session:
        await workforce_repo.delete_workforce(
            session=session, project_id=tenant.project_id, workforce_id=workforce_id
        )
    async with session_factory() as session:
        assert await session.get(Workforce, workforce_id) is None
