"""Posts to Slack as a Slack integration's bot: the `slack_post` step of a tool run, and a
task's answers in the Slack thread that asked (SlackReplyWorkflow: wait for the answer, post
it). The integration is read and its token decrypted here, at call time; Slack's refusals
(`ok: false`) fail the call naming Slack's error, at once unless Slack says it is rate
limited or failing."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.integrations import project_integration
from activities.steps import render_string, render_value
from baton import activity_names
from baton.db.repositories import integrations as integration_repo
from baton.db.tables import Task, TaskMessage
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import SlackApp
from baton.domain.llm import MessageRole
from baton.domain.slack import SlackAnswer, SlackAnswerPost, SlackPosted, SlackReply
from baton.domain.tasks import TaskStatus
from baton.domain.tool_runs import StepCall, StepOutcome
from baton.domain.tools import SlackPostStep
from baton.errors import BatonError
from baton.integrations import slack
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.settings import Settings


class SlackActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._sessions = session_factory
        self._box = SecretBox.from_settings(settings)
        self._egress = EgressPolicy.from_settings(settings)

    @activity.defn(name=activity_names.STEP_SLACK_POST)
    async def post_step(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, SlackPostStep)
        channel = render_string(step.channel, call.context).strip()
        text = render_string(step.text, call.context)
        thread_ts = _optional(render_value(step.thread_ts, call.context))
        app = await self.app(call.project_id, step.integration)
        posted = await post(app, channel=channel, text=text, thread_ts=thread_ts)
        return StepOutcome(output=posted)

    @activity.defn(name=activity_names.SLACK_AWAIT_ANSWER)
    async def await_answer(self, reply: SlackReply) -> SlackAnswer:
        """Looks at the task's messages until the turn that `reply.message` started is over,
        heartbeating; a worker that dies stops heartbeating and another takes over."""
        delay = _FIRST_LOOK_S
        while True:
            async with self._sessions() as session:
                answer = await answer_of(session, reply)
            if answer is not None:
                return answer
            activity.heartbeat()
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _LOOK_EVERY_S)

    @activity.defn(name=activity_names.SLACK_POST_ANSWER)
    async def post_answer(self, answer: SlackAnswerPost) -> SlackPosted:
        app = await self.app(answer.thread.project_id, answer.thread.integration_id)
        posted = await post(
            app,
            channel=answer.thread.channel,
            text=answer.text[:MAX_POST_LENGTH],
            thread_ts=answer.thread.thread_ts,
        )
        return SlackPosted(**posted)

    async def app(self, project_id: str, integration: str) -> SlackApp:
        """The project's Slack integration, by name or id, its secrets decrypted."""
        return await project_integration(
            self._sessions,
            project_id=project_id,
            ref=integration,
            kind="Slack",
            reveal=lambda row: integration_repo.reveal_slack_app(
                box=self._box, row=row, egress=self._egress
            ),
        )


_FIRST_LOOK_S = 0.2
_LOOK_EVERY_S = 5.0
# Slack truncates longer texts; 40 000 characters is its limit.
MAX_POST_LENGTH = 39_000
_SETTLING = frozenset({TaskStatus.queued, TaskStatus.running, TaskStatus.waiting_approval})


async def answer_of(session: AsyncSession, reply: SlackReply) -> SlackAnswer | None:
    """The answer to `reply.message`: the last assistant text of its turn, once the task is
    no longer working on it; why there is none when the task ended; None while it works."""
    task = await session.get(Task, reply.task_id)
    if task is None:
        raise ApplicationError(
            f"task {reply.task_id} not found", type="not_found", non_retryable=True
        )
    status = TaskStatus(task.status)
    rows = await session.scalars(
        select(TaskMessage)
        .where(TaskMessage.task_id == task.id, TaskMessage.seq > reply.after_seq)
        .order_by(TaskMessage.seq)
    )
    turn: list[TaskMessage] = []
    for row in rows:
        if row.role == MessageRole.user.value:
            if turn:
                break  # the next turn's message
            if reply.message in row.content:
                turn.append(row)
        elif turn:
            turn.append(row)
    texts = [
        row.content
        for row in turn
        if row.role == MessageRole.assistant.value and not row.tool_calls and row.content.strip()
    ]
    if texts and status not in _SETTLING:
        return SlackAnswer(text=texts[-1])
    if status.is_final:
        reason = f": {task.error}" if task.error else ""
        return SlackAnswer(text=f"The task ended ({status.value}) without an answer{reason}")
    return None


def _optional(rendered: Any) -> str | None:
    """A thread that renders to nothing (an unset param) is no thread."""
    if rendered is None:
        return None
    return str(rendered).strip() or None


async def post(app: SlackApp, *, channel: str, text: str, thread_ts: str | None) -> dict[str, str]:
    """chat.postMessage; a failure is an ApplicationError, retryable only when Slack's answer
    may change, and never carrying the token."""
    scrubber = SecretScrubber({"bot_token": app.bot_token.get_secret_value()})
    if not channel or not text.strip():
        raise ApplicationError(
            "a Slack post needs a channel and a text; one rendered empty",
            type="invalid_input",
            non_retryable=True,
        )
    try:
        return await slack.post_message(app, channel=channel, text=text, thread_ts=thread_ts)
    except BatonError as exc:
        raise scrubber.error(as_application_error(exc)) from None
