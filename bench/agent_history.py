"""What one turn of an agent task costs in Temporal history: events added by a turn of
`scripted:echo` and by a turn with one tool call (`scripted:tools`), and the history bytes
(plus claim-checked `payload_blobs` bytes) added by turn 2 and by turn 50 of an echo
conversation. Flat is the goal: turn 50 should add about what turn 2 adds.

One embedded dev server, an in-process worker as `baton worker` builds it (its client with
the database claim check) and the task service; a follow-up is the `post_message` update the
API sends. Then a `BENCH_RESULT {json}` line for bench/run_all.py.

    python bench/agent_history.py [--turns 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from dev_server import start_dev_server  # noqa: E402

from baton import temporal  # noqa: E402
from baton.db import migrate  # noqa: E402
from baton.db.engine import create_engine, create_session_factory  # noqa: E402
from baton.db.repositories import accounts  # noqa: E402
from baton.db.repositories import agents as agent_repo  # noqa: E402
from baton.db.repositories import tasks as task_repo  # noqa: E402
from baton.db.repositories import tools as tool_repo  # noqa: E402
from baton.db.tables import PayloadBlob  # noqa: E402
from baton.domain.agents import AgentSpec  # noqa: E402
from baton.domain.tasks import UserMessage  # noqa: E402
from baton.domain.tools import ToolSpec  # noqa: E402
from baton.services.tasks import start_agent_task  # noqa: E402
from baton.settings import Settings  # noqa: E402
from worker import create_worker  # noqa: E402

ECHO_TOOL = ToolSpec.model_validate(
    {
        "name": "echo",
        "params": [{"name": "text"}],
        "steps": [{"name": "t", "type": "template", "template": "got {{ params.text }}"}],
    }
)

# The last event of a history whose workflow waits for a message.
WAITING = (EventType.EVENT_TYPE_TIMER_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)


class Conversation:
    """One task, driven turn by turn; after each turn, what its history holds."""

    def __init__(
        self, client: Client, sessions: async_sessionmaker[AsyncSession], task_id: str, wf: str
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.task_id = task_id
        self.handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(wf)
        self.messages = 1

    async def answered(self) -> None:
        """Until the task is idle with an answer after the last user message."""
        async with asyncio.timeout(60):
            while True:
                async with self.sessions() as session:
                    task = await task_repo.get_task_by_id(session=session, task_id=self.task_id)
                    rows = await task_repo.list_messages(session=session, task_id=self.task_id)
                answer = rows[-1] if len(rows) > self.messages else None
                if task.status == "idle" and answer and answer.role.value == "assistant":
                    # The workflow has finished the turn's commands too: it waits (on its
                    # idle timer, or on a timer still running since an earlier turn).
                    history = await self.handle.fetch_history()
                    if history.events[-1].event_type in WAITING:
                        self.messages = len(rows)
                        return
                await asyncio.sleep(0.02)

    async def say(self, text: str) -> None:
        self.messages += 1
        await self.handle.execute_update("post_message", UserMessage(content=text))
        await self.answered()

    async def size(self) -> tuple[int, int, int]:
        """History events, history bytes and claim-checked bytes of the task's workflow."""
        history = await self.handle.fetch_history()
        async with self.sessions() as session:
            blobs = await session.scalar(
                select(func.coalesce(func.sum(func.length(PayloadBlob.data)), 0)).where(
                    PayloadBlob.workflow_id == self.handle.id
                )
            )
        return len(history.events), sum(e.ByteSize() for e in history.events), int(blobs or 0)


async def main(turns: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    database_url = f"sqlite+aiosqlite:///{data / 'baton.db'}"
    await migrate.aupgrade(database_url)
    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    env = await start_dev_server(data)
    settings = Settings(data_dir=data, database_url=database_url, temporal_task_queue="bench")
    address = env.client.service_client.config.target_host
    client = await temporal.connect(
        settings.model_copy(update={"temporal_address": address}), session_factory=sessions
    )
    async with sessions.begin() as session:
        created = await accounts.bootstrap_organization(
            session=session, org_name="Bench", project_name="Bench"
        )
        project_id = created.project.id
        tool = await tool_repo.create_tool(session=session, project_id=project_id, spec=ECHO_TOOL)
        agents = {
            model: await agent_repo.create_agent(
                session=session,
                project_id=project_id,
                spec=AgentSpec.model_validate(
                    {
                        "name": model,
                        "model": model,
                        "tools": [{"tool_id": tool.id}],
                        "idle_timeout_seconds": 3600,
                    }
                ),
            )
            for model in ("scripted:echo", "scripted:tools")
        }

    async def start(model: str, message: str) -> Conversation:
        async with sessions.begin() as session:
            task = await start_agent_task(
                session=session,
                temporal_client=client,
                settings=settings,
                agent=agents[model],
                message=message,
            )
            task_id, workflow_id = task.id, task.workflow_id
        conversation = Conversation(client, sessions, task_id, workflow_id)
        await conversation.answered()
        return conversation

    async with create_worker(
        client, task_queue="bench", session_factory=sessions, settings=settings
    ):
        echo = await start("scripted:echo", "turn 1")
        sizes = [await echo.size()]
        for turn in range(2, turns + 1):
            await echo.say(f"turn {turn}")
            sizes.append(await echo.size())
        tools = await start("scripted:tools", "hello")
        before = await tools.size()
        await tools.say('call echo {"text": "one"}')
        after = await tools.size()

        for conversation in (echo, tools):
            await conversation.handle.cancel()
            with contextlib.suppress(WorkflowFailureError):
                await conversation.handle.result()
    await env.shutdown()
    await engine.dispose()
    shutil.rmtree(data, ignore_errors=True)

    def added(turn: int) -> tuple[int, int, int]:
        (e0, b0, p0), (e1, b1, p1) = sizes[turn - 2], sizes[turn - 1]
        return e1 - e0, b1 - b0, p1 - p0

    echo_events = added(2)[0]
    tool_events = after[0] - before[0]
    _, bytes_2, blobs_2 = added(2)
    _, bytes_n, blobs_n = added(turns)
    print(f"agent_history: {turns} echo turns, then one turn with a tool call")
    print(f"  events per echo turn:          {echo_events}  (turn {turns}: {added(turns)[0]})")
    print(f"  events per one-tool-call turn: {tool_events}")
    print(f"  history bytes added, turn 2:   {bytes_2}  (+{blobs_2} in payload_blobs)")
    print(f"  history bytes added, turn {turns}:  {bytes_n}  (+{blobs_n} in payload_blobs)")
    print(f"  history after {turns} turns:      {sizes[-1][0]} events, {sizes[-1][1]} bytes")
    figures: list[dict[str, object]] = [
        {"name": "history events per echo turn", "value": echo_events, "unit": "events"},
        {"name": "history events per one-tool-call turn", "value": tool_events, "unit": "events"},
        {"name": "history bytes added by turn 2", "value": bytes_2 + blobs_2, "unit": "bytes"},
        {
            "name": f"history bytes added by turn {turns}",
            "value": bytes_n + blobs_n,
            "unit": "bytes",
            "better": "lower",
            "baseline": {"name": "turn 2", "value": bytes_2 + blobs_2},
        },
    ]
    print("BENCH_RESULT " + json.dumps({"benchmark": "agent_history", "figures": figures}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.turns))
