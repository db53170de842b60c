"""The payload contracts: every type that crosses Temporal (a workflow's input and result, its
signals, updates and queries, an activity's input and result) and every model nested in one,
read off the registered workflows and activities themselves.

`contracts_data/required_fields.json` beside this module records each contract model's
required fields as they were when it was last written. tests/test_payload_contracts.py fails
on a field that is required now and was not then (an input recorded before it would no longer
decode). Run `python -m tests.replay.contracts` to record a new model, or a field removed from
the required ones; a field never becomes required once recorded, it gets a default instead."""

from __future__ import annotations

import inspect
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from temporalio import activity, workflow

import activities
from worker import WORKFLOWS

FIELDS_FILE = Path(__file__).parent / "contracts_data" / "required_fields.json"


def activity_definitions() -> dict[str, activity._Definition]:
    """Every activity the `activities` package defines, by its registered name."""
    found: dict[str, activity._Definition] = {}
    for module in _activity_modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for _, function in inspect.getmembers(cls, inspect.isfunction):
                definition = activity._Definition.from_callable(function)
                if definition is not None and definition.name is not None:
                    assert definition.name not in found, f"{definition.name} defined twice"
                    found[definition.name] = definition
    return found


def workflow_definitions() -> dict[str, workflow._Definition]:
    return {
        definition.name: definition
        for definition in map(workflow._Definition.must_from_class, WORKFLOWS)
        if definition.name is not None
    }


def contract_types() -> set[Any]:
    """The types of every argument and result that crosses Temporal."""
    found: set[Any] = set()
    for act in activity_definitions().values():
        found.update(act.arg_types or [])
        found.add(act.ret_type)
    for flow in workflow_definitions().values():
        found.update(flow.arg_types or [])
        found.add(flow.ret_type)
        for handler in [*flow.signals.values(), *flow.updates.values(), *flow.queries.values()]:
            found.update(handler.arg_types or [])
            found.add(getattr(handler, "ret_type", None))
    return found - {None}


def contract_models() -> dict[str, type[BaseModel]]:
    """Every pydantic model a contract holds, nested ones included, by qualified name."""
    models: dict[str, type[BaseModel]] = {}
    pending = [model for top in contract_types() for model in _models_in(top)]
    while pending:
        model = pending.pop()
        name = f"{model.__module__}.{model.__qualname__}"
        if name in models:
            continue
        models[name] = model
        for field in model.model_fields.values():
            pending.extend(_models_in(field.annotation))
    return models


def required_fields(model: type[BaseModel]) -> list[str]:
    return sorted(name for name, field in model.model_fields.items() if field.is_required())


def recorded_required_fields() -> dict[str, list[str]]:
    loaded: dict[str, list[str]] = json.loads(FIELDS_FILE.read_text())
    return loaded


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType) or origin is Union:
        for arg in get_args(annotation):
            yield from _models_in(arg)


def _activity_modules() -> list[types.ModuleType]:
    import importlib
    import pkgutil

    return [
        importlib.import_module(f"activities.{info.name}")
        for info in pkgutil.iter_modules(activities.__path__)
    ]


def main() -> None:
    fields = {name: required_fields(model) for name, model in sorted(contract_models().items())}
    FIELDS_FILE.write_text(json.dumps(fields, indent=1, sort_keys=True) + "\n")
    sys.stderr.write(f"{len(fields)} contract models recorded in {FIELDS_FILE.name}\n")


if __name__ == "__main__":
    main()
