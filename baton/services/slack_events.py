"""What an event Slack sends to a Slack trigger's URL does. A mention of the bot, or a direct
message, starts a task; a reply in the thread of such a task is a follow-up message to it
(the task workflow's `post_message` update). One task per Slack thread: its id is derived
from the trigger and the thread (channel and the thread's first ts), so the thread finds its
task with no table of its own. Each message handed to a task starts a SlackReplyWorkflow that
posts the answer in the thread.

Everything here is quick (database writes and Temporal starts): the route answers Slack within
its 3 seconds, and the model works afterwards, in the workflows, which survive a crash. An
event Slack sends again (the same `event_id`) after it was acted on starts nothing."""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton.db.repositories import slack_triggers as slack_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import SlackTrigger, Task, TaskMessage
from baton.domain.slack import SlackReply, SlackThread
from baton.domain.tasks import UserMessage
from baton.services.triggers import start_target_task
from baton.settings import Settings

logger = logging.getLogger("baton.slack")

SLACK_REPLY_WORKFLOW = "SlackReplyWorkflow"
# The update both task workflows (agent and workforce) take follow-up messages by.
POST_MESSAGE_UPDATE = "post_message"
_MENTION = re.compile(r"<@[A-Z0-9]+>")


@dataclass(frozen=True)
class Asked:
    """A message for a task: its text, its thread, and whether it may start a task (a
    mention or a direct message) or only continue one (a reply in a thread)."""

    text: str
    channel: str
    thread_ts: str
    starts: bool


def asked(event: dict[str, Any], bot_user_id: str | None) -> Asked | None:
    """What an event asks, or None for one that asks nothing of Baton: a bot's message (its
    own answers among them), an edit or any other subtype, an empty text."""
    if event.get("bot_id") or event.get("subtype"):
        return None
    kind, channel, ts = event.get("type"), event.get("channel"), event.get("ts")
    raw = event.get("text")
    if not isinstance(channel, str) or not isinstance(ts, str) or not isinstance(raw, str):
        return None
    text = _MENTION.sub("", raw).strip()
    thread_ts = event.get("thread_ts")
    thread = thread_ts if isinstance(thread_ts, str) and thread_ts else ts
    if not text:
        return None
    if kind == "app_mention":
        return Asked(text, channel, thread, starts=True)
    if kind != "message":
        return None
    if event.get("channel_type") == "im":
        return Asked(text, channel, thread, starts=True)
    mentioned = bot_user_id is not None and f"<@{bot_user_id}>" in raw
    if thread != ts and not mentioned:  # a mention comes as an app_mention too
        return Asked(text, channel, thread, starts=False)
    return None


def thread_task_id(trigger: SlackTrigger, channel: str, thread_ts: str) -> str:
    return str(uuid.uuid5(uuid.UUID(trigger.id), f"slack:{channel}:{thread_ts}"))


async def handle_event(
    *,
    session: AsyncSession,
    temporal_client: Client,
    settings: Settings,
    trigger: SlackTrigger,
    event_id: str,
    event: dict[str, Any],
    bot_user_id: str | None,
) -> str:
    """Acts on one event; says what was done (for the route's answer and the logs)."""
    message = asked(event, bot_user_id)
    if message is None:
        return "ignored"
    task_id = thread_task_id(trigger, message.channel, message.thread_ts)
    task = await session.get(Task, task_id)
    if task is None and not message.starts:
        return "ignored"  # a thread Baton has no task for
    if await slack_repo.seen(session=session, trigger=trigger, event_id=event_id):
        return "duplicate"
    if task is None:
        after_seq = -1
        task = await start_target_task(
            session=session,
            temporal_client=temporal_client,
            settings=settings,
            target=Target.of(trigger),
            message=message.text,
            task_id=task_id,
        )
    else:
        after_seq = await _last_seq(session, task.id)
        handle = temporal_client.get_workflow_handle(task.workflow_id)
        try:
            await handle.execute_update(
                POST_MESSAGE_UPDATE, UserMessage(content=message.text), id=f"slack-{event_id}"
            )
        except (WorkflowUpdateFailedError, RPCError) as exc:
            if isinstance(exc, RPCError) and exc.status != RPCStatusCode.NOT_FOUND:
                raise
            logger.info("task %s has ended; a reply in its Slack thread is not sent", task.id)
            return "ended"
    await _start_reply(temporal_client, settings, trigger, event_id, message, task.id, after_seq)
    # Recorded once everything is started: an event that failed half way is acted on again
    # when Slack resends it, and each step of it is idempotent (the task's id, the update's
    # id, the reply workflow's id).
    await slack_repo.record_event(session=session, trigger=trigger, event_id=event_id)
    return "started" if after_seq < 0 else "follow-up"


async def _last_seq(session: AsyncSession, task_id: str) -> int:
    last = await session.scalar(
        select(func.max(TaskMessage.seq)).where(TaskMessage.task_id == task_id)
    )
    return -1 if last is None else int(last)


async def _start_reply(
    temporal_client: Client,
    settings: Settings,
    trigger: SlackTrigger,
    event_id: str,
    message: Asked,
    task_id: str,
    after_seq: int,
) -> None:
    reply = SlackReply(
        thread=SlackThread(
            project_id=trigger.project_id,
            integration_id=trigger.integration_id,
            channel=message.channel,
            thread_ts=message.thread_ts,
        ),
        task_id=task_id,
        message=message.text,
        after_seq=after_seq,
    )
    # Already started: this event's answer is already awaited.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await temporal_client.start_workflow(
            SLACK_REPLY_WORKFLOW,
            reply,
            id=f"slack-reply-{trigger.id}-{event_id}",
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"answer in Slack thread {message.channel}/{message.thread_ts}",
        )
