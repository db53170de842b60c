"""`SlackReplyWorkflow`: posts a task's answer in the Slack thread that asked for it. The
events route starts one per message it hands a task (id `slack-reply-<trigger>-<event_id>`,
so a second start of the same event does nothing), and answers Slack at once: the task and
this workflow do the rest, and both survive a crash of the API or of the worker.

It waits for the answer with one activity that looks at the task's messages until the turn
is over, heartbeating, so the wait costs no history events however long the task works.
Then it posts. AgentTaskWorkflow is not changed: the task does not know it is answered in
Slack."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from baton import activity_names
    from baton.domain.slack import SlackAnswer, SlackAnswerPost, SlackPosted, SlackReply

# The activity looks at the task's messages every few seconds, heartbeating, for up to an
# hour an attempt; a worker that dies is noticed within the heartbeat timeout and the wait goes
# on elsewhere. A task that has not answered within a week is not waited for.
ANSWER_LOOK_TIMEOUT = timedelta(hours=1)
ANSWER_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
ANSWER_WAIT = timedelta(days=7)
ANSWER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["not_found"],
)
POST_TIMEOUT = timedelta(seconds=30)
POST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)


@workflow.defn(name="SlackReplyWorkflow")
class SlackReplyWorkflow:
    @workflow.run
    async def run(self, reply: SlackReply) -> SlackPosted:
        answer: SlackAnswer = await workflow.execute_activity(
            activity_names.SLACK_AWAIT_ANSWER,
            reply,
            result_type=SlackAnswer,
            start_to_close_timeout=ANSWER_LOOK_TIMEOUT,
            heartbeat_timeout=ANSWER_HEARTBEAT_TIMEOUT,
            schedule_to_close_timeout=ANSWER_WAIT,
            retry_policy=ANSWER_RETRY,
            summary="await the task's answer",
        )
        posted: SlackPosted = await workflow.execute_activity(
            activity_names.SLACK_POST_ANSWER,
            SlackAnswerPost(thread=reply.thread, text=answer.text),
            result_type=SlackPosted,
            start_to_close_timeout=POST_TIMEOUT,
            retry_policy=POST_RETRY,
            summary="post the answer in the thread",
        )
        return posted
