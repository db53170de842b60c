"""The services start, query and signal workflows by their registered names, so `baton` does
not import the workflow layer: these names must be the ones the workflows are defined by."""

from __future__ import annotations

from temporalio import workflow

from baton.services import (
    embedding,
    knowledge_sources,
    schedules,
    tasks,
    tool_runs,
    workforce_tasks,
)
from workflows.agent_task import AgentTaskWorkflow
from workflows.knowledge import EmbedSetWorkflow
from workflows.knowledge_sources import KnowledgeSourceSyncWorkflow
from workflows.tool_run import ToolRunWorkflow
from workflows.workforce import WorkforceWorkflow


def test_the_agent_task_workflow_is_started_by_its_registered_name() -> None:
    definition = workflow._Definition.must_from_class(AgentTaskWorkflow)
    assert definition.name == tasks.AGENT_TASK_WORKFLOW
    assert definition.name == schedules.AGENT_TASK_WORKFLOW


def test_a_workforce_task_is_started_by_its_registered_name_and_takes_agent_task_updates() -> None:
    definition = workflow._Definition.must_from_class(WorkforceWorkflow)
    assert definition.name == workforce_tasks.WORKFORCE_WORKFLOW
    # The task routes send follow-ups by AgentTaskWorkflow's update, to either kind of task.
    agent_task = workflow._Definition.must_from_class(AgentTaskWorkflow)
    assert "post_message" in agent_task.updates
    assert "post_message" in definition.updates


def test_a_tool_run_is_started_and_queried_by_its_registered_names() -> None:
    definition = workflow._Definition.must_from_class(ToolRunWorkflow)
    assert definition.name == tool_runs.TOOL_RUN_WORKFLOW
    assert tool_runs.PROGRESS_QUERY in definition.queries


def test_an_embedding_is_started_and_signalled_by_its_registered_names() -> None:
    definition = workflow._Definition.must_from_class(EmbedSetWorkflow)
    assert definition.name == embedding.EMBED_SET_WORKFLOW
    assert embedding.ROWS_CHANGED_SIGNAL in definition.signals


def test_a_knowledge_source_sync_is_started_by_its_registered_name() -> None:
    definition = workflow._Definition.must_from_class(KnowledgeSourceSyncWorkflow)
    assert definition.name == knowledge_sources.SOURCE_SYNC_WORKFLOW
