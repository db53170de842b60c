"""Agents of a project."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import Agent, AgentVersion, utcnow
from baton.domain.agents import AgentSpec
from baton.errors import NotFound


async def create_agent(*, session: AsyncSession, project_id: str, spec: AgentSpec) -> Agent:
    agent = Agent(
        project_id=project_id, name=spec.name, spec=spec.model_dump(mode="json"), version=1
    )
    session.add(agent)
    await session.flush()
    session.add(AgentVersion(agent_id=agent.id, version=1, spec=agent.spec))
    await session.flush()
    return agent


async def list_agents(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[Agent]:
    query = select(Agent).where(Agent.project_id == project_id)
    order = (Agent.created_at, Agent.id)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def get_agent(*, session: AsyncSession, project_id: str, agent_id: str) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.project_id != project_id:
        raise NotFound(f"agent {agent_id} not found")
    return agent


async def update_agent(
    *, session: AsyncSession, project_id: str, agent_id: str, spec: AgentSpec
) -> Agent:
    """Saves `spec` as the agent's next version; tasks already started keep theirs."""
    agent = await get_agent(session=session, project_id=project_id, agent_id=agent_id)
    agent.name = spec.name
    agent.spec = spec.model_dump(mode="json")
    agent.version += 1
    agent.updated_at = utcnow()
    session.add(AgentVersion(agent_id=agent.id, version=agent.version, spec=agent.spec))
    await session.flush()
    return agent


async def list_versions(
    *, session: AsyncSession, agent_id: str, page: PageRequest = ALL
) -> Paged[AgentVersion]:
    query = select(AgentVersion).where(AgentVersion.agent_id == agent_id)
    order = (AgentVersion.version,)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def delete_agent(*, session: AsyncSession, project_id: str, agent_id: str) -> None:
    await session.delete(await get_agent(session=session, project_id=project_id, agent_id=agent_id))


def agent_spec(agent: Agent) -> AgentSpec:
    return AgentSpec.model_validate(agent.spec)


async def version_spec(*, session: AsyncSession, agent_id: str, version: int) -> AgentSpec | None:
    row = await session.scalar(
        select(AgentVersion).where(
            AgentVersion.agent_id == agent_id, AgentVersion.version == version
        )
    )
    return AgentSpec.model_validate(row.spec) if row else None
