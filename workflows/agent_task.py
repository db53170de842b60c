"""`AgentTaskWorkflow`: one task, a conversation between a user and an agent."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.llm import LlmActivities
    from activities.tasks import TaskActivities
    from baton.domain.llm import LlmRequest, Message, MessageRole
    from baton.domain.tasks import (
        AgentTaskInput,
        AgentTaskResult,
        TaskMessageAppend,
        TaskStatus,
        TaskStatusUpdate,
    )
    from baton.temporal import BATON_STATUS
    from workflows import policies

_DETAILS = {
    TaskStatus.running: "thinking",
    TaskStatus.completed: "answered",
    TaskStatus.failed: "failed",
}


@workflow.defn(name="AgentTaskWorkflow")
class AgentTaskWorkflow:
    def __init__(self) -> None:
        self._status = TaskStatus.queued
        self._transcript: list[Message] = []

    @workflow.run
    async def run(self, task: AgentTaskInput) -> AgentTaskResult:
        self._task_id = task.task_id
        # Message 0 (the user's first message) was written by the API with the task.
        self._transcript = [Message(role=MessageRole.user, content=task.message)]
        await self._set_status(TaskStatus.running)

        prompt = list(self._transcript)
        if task.agent.system_prompt:
            prompt.insert(0, Message(role=MessageRole.system, content=task.agent.system_prompt))
        try:
            response = await workflow.execute_activity_method(
                LlmActivities.complete,
                LlmRequest(
                    model=task.agent.model, messages=prompt, temperature=task.agent.temperature
                ),
                start_to_close_timeout=policies.LLM_CALL_TIMEOUT,
                retry_policy=policies.LLM_RETRY,
                summary=f"llm {task.agent.model}",
            )
        except ActivityError as exc:
            error = _failure_message(exc)
            await self._set_status(TaskStatus.failed, error=error)
            return AgentTaskResult(status=TaskStatus.failed, error=error)

        answer = Message(role=MessageRole.assistant, content=response.content)
        await self._append(answer)
        await self._set_status(TaskStatus.completed)
        return AgentTaskResult(status=TaskStatus.completed, answer=answer.content)

    @workflow.query
    def status(self) -> TaskStatus:
        return self._status

    async def _append(self, message: Message) -> None:
        seq = len(self._transcript)
        self._transcript.append(message)
        await workflow.execute_activity_method(
            TaskActivities.put_message,
            TaskMessageAppend(task_id=self._task_id, seq=seq, message=message),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"save {message.role.value} message",
        )

    async def _set_status(self, status: TaskStatus, error: str | None = None) -> None:
        self._status = status
        workflow.upsert_search_attributes([BATON_STATUS.value_set(status.value)])
        workflow.set_current_details(_DETAILS.get(status, status.value))
        await workflow.execute_activity_method(
            TaskActivities.set_status,
            TaskStatusUpdate(task_id=self._task_id, status=status, error=error),
            start_to_close_timeout=policies.DB_WRITE_TIMEOUT,
            retry_policy=policies.DB_WRITE_RETRY,
            summary=f"status {status.value}",
        )


def _failure_message(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or exc)
