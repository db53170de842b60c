"""What Baton carries for a Slack thread it answers in: payloads of `SlackReplyWorkflow` and its
activities. They hold ids and Slack's coordinates, never a token: the integration is read, and
its token decrypted, inside the activity that posts."""

from __future__ import annotations

from pydantic import BaseModel


class SlackThread(BaseModel):
    """Where a task's answers go: a Slack app's thread (`thread_ts` is its first message's ts)."""

    project_id: str
    integration_id: str
    channel: str
    thread_ts: str


class SlackReply(BaseModel):
    """One answer due in a thread: that of the turn `message` started in task `task_id`.
    `after_seq` is the task's last message seq before the message was sent (-1: a new task)."""

    thread: SlackThread
    task_id: str
    message: str
    after_seq: int = -1


class SlackAnswer(BaseModel):
    """The text to post: the turn's answer, or why the task gave none."""

    text: str


class SlackAnswerPost(BaseModel):
    thread: SlackThread
    text: str


class SlackPosted(BaseModel):
    channel: str
    ts: str
