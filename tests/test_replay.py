"""Every recorded history replays on today's workflow code.

tests/replay/ holds one history per scenario, recorded by `make record-histories`
(tests/replay/record.py). Each replays with the production data converter (encrypted payloads,
here under the histories' test-only key) and the production workflow runners. A change to a
workflow's commands that a run already in flight would not survive (a nondeterminism error)
fails here: such a change goes behind `workflow.patched` (README, "Changing workflow code")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from baton import temporal
from baton.payload_codec import workflow_id_of
from tests.replay import HISTORIES, SCENARIOS, replay_settings
from worker import WORKFLOWS, workflow_runners


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def replayer(*, sandbox_all_workflows: bool = False) -> Replayer:
    """The worker's way of running workflows (worker.create_worker), and its converter."""
    settings = replay_settings(sandbox_all_workflows=sandbox_all_workflows)
    sandbox, unsandboxed = workflow_runners(settings)
    return Replayer(
        workflows=WORKFLOWS,
        data_converter=temporal.data_converter(settings),
        workflow_runner=sandbox,
        unsandboxed_workflow_runner=unsandboxed,
    )


def load(history_file: Path) -> WorkflowHistory:
    """The history under its own workflow id, which its (encrypted) input payload names."""
    text = history_file.read_text()
    placeholder = WorkflowHistory.from_json(history_file.stem, text)
    started = placeholder.events[0].workflow_execution_started_event_attributes
    workflow_id = workflow_id_of(started.input.payloads[0])
    assert workflow_id, f"{history_file.name}: its input names no workflow"
    return WorkflowHistory.from_json(workflow_id, text)


def test_every_expected_scenario_is_recorded_and_nothing_else():
    assert sorted(path.stem for path in recorded()) == sorted(SCENARIOS)


@pytest.mark.parametrize("history_file", recorded(), ids=lambda path: path.stem)
def test_a_recorded_history_keeps_every_payload_in_history(history_file: Path):
    """No payload went to the database claim check (baton/db/payload_store.py), which the
    replay has no database to resolve: the scenarios stay under its 64 KB threshold."""
    events = json.loads(history_file.read_text())["events"]
    assert events, f"{history_file.name} has no events"
    assert "externalPayloads" not in history_file.read_text()


@pytest.mark.parametrize("history_file", recorded(), ids=lambda path: path.stem)
async def test_a_recorded_history_replays_on_todays_workflow_code(history_file: Path):
    # Raises on the first command that differs from the recorded one, or on a workflow task
    # that fails (a payload that no longer decodes, say).
    await replayer().replay_workflow(load(history_file))


@pytest.mark.parametrize("history_file", recorded(), ids=lambda path: path.stem)
async def test_a_recorded_history_replays_with_every_workflow_in_the_sandbox(history_file: Path):
    """As the test suite runs tool runs (BATON_SANDBOX_ALL_WORKFLOWS), where a call that is not
    deterministic fails."""
    await replayer(sandbox_all_workflows=True).replay_workflow(load(history_file))
