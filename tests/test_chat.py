"""`baton chat` against the real API over HTTP: the answer streams in, an approval is asked
and answered, and an empty line ends the chat."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker

from baton.chat import Chat, ChatError, parse_params
from baton.examples import create_example_agent
from tests.support import Tenant


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


async def test_a_wrong_agent_id_fails_before_the_first_message(live_api: str, tenant: Tenant):
    prompts: list[str] = []
    chat = Chat(
        api_url=live_api,
        token=tenant.token,
        project_id=tenant.project_id,
        agent_id="no-such-agent",
        ask=lambda prompt: prompts.append(prompt) or "hello",
        out=io.StringIO(),
    )
    with pytest.raises(ChatError, match="no agent 'no-such-agent'"):
        await asyncio.to_thread(chat.run)
    assert prompts == []


async def test_a_chat_names_the_agent_passes_its_params_and_exit_leaves(
    live_api: str, tenant: Tenant, worker: Worker
):
    async with httpx.AsyncClient(base_url=live_api, headers=tenant.headers) as client:
        created = await client.post(
            tenant.url("/agents"),
            json={
                "name": "Greeter",
                "model": "scripted:echo",
                "idle_timeout_seconds": 60,
                "params": [{"name": "region", "type": "text", "required": True}],
                "welcome_message": "Hello from {{ params.region }}",
            },
        )
        assert created.status_code == 201, created.text
    typed = iter(["hi there", "/exit"])
    out = io.StringIO()
    chat = Chat(
        api_url=live_api,
        token=tenant.token,
        project_id=tenant.project_id,
        agent_id=created.json()["id"],
        ask=lambda _prompt: next(typed),
        out=out,
        params=parse_params(["region=eu"]),
    )
    code = await asyncio.wait_for(asyncio.to_thread(chat.run), timeout=60)

    assert code == 0
    text = out.getvalue()
    assert text.startswith("Chatting with Greeter (scripted:echo). /exit leaves.\n")
    assert "You said: hi there" in text
    assert text.rstrip().endswith("[chat ended]")  # /exit was not sent to the agent
    assert "You said: /exit" not in text


def test_params_are_json_values_or_text():
    assert parse_params(["region=eu", "limit=3", "tags=[1, 2]", "note=a=b"]) == {
        "region": "eu",
        "limit": 3,
        "tags": [1, 2],
        "note": "a=b",
    }
    with pytest.raises(ChatError, match="name=value"):
        parse_params(["region"])
