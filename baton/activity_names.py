"""The names activities are registered under (`@activity.defn(name=...)` in `activities/`),
for workflows to call them by.

Workflows call activities by name rather than through their classes: an activity's module
imports the database, the provider SDKs and HTTP clients, and a workflow module that imported
it would load all of those into the worker's sandbox and every replay. A name here is part of
every recorded history that scheduled it: never change one, add a new activity instead."""

from __future__ import annotations

from typing import Final

TASK_BEGIN: Final = "baton.task.begin"
TASK_SET_STATUS: Final = "baton.task.set_status"
TASK_PUT_MESSAGE: Final = "baton.task.put_message"
TASK_APPEND_EVENTS: Final = "baton.task.append_events"
TASK_RECORD: Final = "baton.task.record"
TASK_ADMIT: Final = "baton.task.admit"
WORKFORCE_TASK_BEGIN: Final = "baton.workforce_task.begin"
WORKFORCE_TASK_RECORD: Final = "baton.workforce_task.record"
LLM_COMPLETE: Final = "baton.llm.complete"
LLM_CHAT: Final = "baton.llm.chat"
MCP_LIST_TOOLS: Final = "baton.mcp.list_tools"
MCP_CALL: Final = "baton.mcp.call"

STEP_LLM: Final = "baton.step.llm"
STEP_HTTP: Final = "baton.step.http"
STEP_CODE: Final = "baton.step.code"
STEP_MCP: Final = "baton.step.mcp"
STEP_SLACK_POST: Final = "baton.step.slack_post"
SLACK_AWAIT_ANSWER: Final = "baton.slack.await_answer"
SLACK_POST_ANSWER: Final = "baton.slack.post_answer"
STEP_EMAIL_SEND: Final = "baton.step.email_send"
STEP_KNOWLEDGE_SEARCH: Final = "baton.step.knowledge_search"
STEP_KNOWLEDGE_INSERT: Final = "baton.step.knowledge_insert"
STEP_KNOWLEDGE_UPDATE: Final = "baton.step.knowledge_update"
STEP_KNOWLEDGE_DELETE: Final = "baton.step.knowledge_delete"
TOOL_RUN_FINISH: Final = "baton.tool_run.finish"

ENRICHMENT_BATCH: Final = "baton.enrichment.batch"
ENRICHMENT_FINISH: Final = "baton.enrichment.finish"

EMBED_BATCH: Final = "baton.knowledge.embed_batch"
EMBED_FINISH: Final = "baton.knowledge.embed_finish"

SOURCE_PLAN: Final = "baton.knowledge.source_plan"
SOURCE_SYNC_BATCH: Final = "baton.knowledge.source_sync_batch"
SOURCE_FINISH: Final = "baton.knowledge.source_finish"
BULK_START_BATCH: Final = "baton.bulk_tasks.start_batch"
BULK_SET_STATUS: Final = "baton.bulk_tasks.set_status"
