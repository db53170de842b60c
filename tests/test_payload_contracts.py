"""The payloads that cross Temporal live in `baton.domain`, and an old payload keeps decoding.

Read off the registered workflows and activities (tests/replay/contracts.py), so a new
activity or signal is covered without being listed here. The replay test (test_replay.py)
decodes what a workflow receives (its input, signals, updates, activity results) on today's
code; this one decodes what it sent, the recorded activity and child workflow inputs, as
today's activities would receive them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from baton import activity_names, temporal
from baton.domain.tool_runs import ToolRunInput
from baton.domain.tools import ToolSpec
from tests.replay import HISTORIES, replay_settings
from tests.replay.contracts import (
    FIELDS_FILE,
    activity_definitions,
    contract_models,
    contract_types,
    recorded_required_fields,
    required_fields,
    workflow_definitions,
)
from tests.test_replay import load

CONVERTER = temporal.data_converter(replay_settings())


def test_every_activity_name_is_defined_once_and_every_activity_has_a_name():
    declared = {
        value
        for key, value in vars(activity_names).items()
        if key.isupper() and isinstance(value, str)
    }
    assert set(activity_definitions()) == declared


def test_every_payload_model_lives_in_baton_domain():
    outside = [
        name for name, model in contract_models().items() if not name.startswith("baton.domain.")
    ]
    assert outside == []
    assert contract_types() - set(contract_models().values()) <= {str, type(None)}


def test_no_payload_field_became_required_since_it_was_recorded():
    recorded = recorded_required_fields()
    unrecorded = sorted(set(contract_models()) - set(recorded))
    assert unrecorded == [], f"run `python -m tests.replay.contracts` to record {unrecorded}"
    newly_required = {
        name: sorted(set(required_fields(model)) - set(recorded[name]))
        for name, model in contract_models().items()
    }
    assert {name: new for name, new in newly_required.items() if new} == {}, (
        "give these fields defaults: a payload recorded before them would not decode"
    )


def test_the_recorded_fields_file_is_current():
    """A field that gained a default, or a model gone, is written down too, so the file says
    what today's code requires (the test above only catches the direction that breaks)."""
    current = {name: required_fields(model) for name, model in contract_models().items()}
    assert recorded_required_fields() == current, (
        f"run `python -m tests.replay.contracts` to update {FIELDS_FILE.name}"
    )


async def test_a_payload_with_a_field_a_later_version_dropped_still_decodes():
    """Saving a definition refuses a field it does not know; a payload that carries one (a
    run started before the field was removed) decodes without it."""
    spec = {"name": "t", "steps": [{"name": "a", "type": "template", "template": "x"}]}
    with pytest.raises(ValidationError, match="retired"):
        ToolSpec.model_validate({**spec, "retired": True})
    old = ToolRunInput.model_validate(
        {"run_id": "r", "project_id": "p", "tool_id": "t", "tool_version": 1, "specs": {"t": spec}}
    ).model_dump(mode="json")
    old["specs"]["t"]["retired"] = True
    old["specs"]["t"]["steps"][0]["retired"] = "too"
    old["retired"] = 1
    # The payload as an old run's history holds it: its JSON, encrypted.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(old).encode())
    assert CONVERTER.payload_codec is not None
    [encoded] = await CONVERTER.payload_codec.encode([plain])
    [decoded] = await CONVERTER.decode([encoded], [ToolRunInput])
    assert isinstance(decoded, ToolRunInput)
    assert decoded.specs["t"].steps[0].name == "a"


def recorded_sends(history_file: Path) -> list[tuple[str, Sequence[Payload], list[Any]]]:
    """(what, payloads, today's types) for every activity and child workflow it started."""
    acts, flows = activity_definitions(), workflow_definitions()
    sends: list[tuple[str, Sequence[Payload], list[Any]]] = []
    for event in load(history_file).events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            name = scheduled.activity_type.name
            assert name in acts, f"{history_file.stem} calls {name}, which nothing defines"
            sends.append((name, scheduled.input.payloads, list(acts[name].arg_types or [])))
        if event.HasField("start_child_workflow_execution_initiated_event_attributes"):
            child = event.start_child_workflow_execution_initiated_event_attributes
            name = child.workflow_type.name
            assert name in flows, f"{history_file.stem} starts {name}, which nothing defines"
            sends.append((name, child.input.payloads, list(flows[name].arg_types or [])))
    return sends


@pytest.mark.parametrize(
    "history_file", sorted(HISTORIES.glob("*.json")), ids=lambda path: path.stem
)
async def test_every_recorded_activity_and_child_input_decodes_as_today_s_contract(
    history_file: Path,
):
    sends = recorded_sends(history_file)
    assert sends, f"{history_file.stem} starts no activity"
    for what, payloads, arg_types in sends:
        assert len(payloads) == len(arg_types), what
        decoded = await CONVERTER.decode(payloads, arg_types)
        assert [type(value) for value in decoded] == arg_types, what
