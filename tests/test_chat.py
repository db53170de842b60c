"""`baton chat` against the real API over HTTP: the answer streams in, an approval is asked
and answered, and an empty line ends the chat."""

from __future__ import annotations

import asyncio
import io

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker

from baton.chat import Chat
from baton.examples import create_example_agent
from tests.conftest import Tenant


async def test_a_terminal_chat_streams_asks_for_approval_and_ends(
    live_api: str,
    tenant: Tenant,
    worker: Worker,
    session_factory: async_sessionmaker[AsyncSession],
):
    async with session_factory.begin() as session:
        agent = await create_example_agent(session=session, project_id=tenant.project_id)
    typed = iter(
        [
            'call look_up_order {"order": "A-17"}\n'
            'call send_email {"to": "ada@example.com", "body": "It ships"}',
            "y",
            "",
        ]
    )
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(typed)

    out = io.StringIO()
    chat = Chat(
        api_url=live_api,
        token=tenant.token,
        project_id=tenant.project_id,
        agent_id=agent.id,
        ask=ask,
        out=out,
    )
    code = await asyncio.wait_for(asyncio.to_thread(chat.run), timeout=60)

    assert code == 0
    assert prompts[1] == 'Allow send_email({"to": "ada@example.com", "body": "It ships"})? [y/N] '
    text = out.getvalue()
    assert "[look_up_order done]" in text and "[send_email done]" in text
    assert "look_up_order: Order A-17: shipped" in text
    assert text.rstrip().endswith("[chat ended]")
