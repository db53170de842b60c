"""The example a new installation starts with: an agent on the offline scripted model with two
tools, one of them needing a person's approval, so the README's tour works on a fresh clone."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.repositories import agents as agent_repo
from baton.db.repositories import tools as tool_repo
from baton.db.tables import Agent
from baton.domain.agents import AgentSpec, AgentTool, Approval
from baton.domain.tools import ToolSpec

LOOKUP_ORDER = ToolSpec.model_validate(
    {
        "name": "Look up order",
        "description": "Finds an order's status by its number",
        "params": [{"name": "order", "type": "text", "description": "The order number"}],
        "steps": [
            {
                "name": "status",
                "type": "template",
                "template": "Order {{ params.order }}: shipped, arriving in 2 days.",
            }
        ],
    }
)

SEND_EMAIL = ToolSpec.model_validate(
    {
        "name": "Send email",
        "description": "Sends an email to a customer (a demo: it only drafts it)",
        "params": [
            {"name": "to", "type": "text"},
            {"name": "body", "type": "long_text"},
        ],
        "steps": [
            {
                "name": "draft",
                "type": "template",
                "template": "Email to {{ params.to }} queued: {{ params.body }}",
            }
        ],
    }
)


async def create_example_agent(*, session: AsyncSession, project_id: str) -> Agent:
    lookup = await tool_repo.create_tool(session=session, project_id=project_id, spec=LOOKUP_ORDER)
    email = await tool_repo.create_tool(session=session, project_id=project_id, spec=SEND_EMAIL)
    return await agent_repo.create_agent(
        session=session,
        project_id=project_id,
        spec=AgentSpec(
            name="Support demo",
            description="An offline demo agent: the scripted model calls the tools you name",
            system_prompt="You help customers with their orders.",
            model="scripted:tools",
            tools=[
                AgentTool(tool_id=lookup.id),
                AgentTool(tool_id=email.id, approval=Approval.required),
            ],
            idle_timeout_seconds=3600,
        ),
    )
