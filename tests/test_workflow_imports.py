"""Workflow modules are light: importing one loads no web framework, database, provider SDK,
HTTP client or numpy. The sandbox re-imports a workflow's modules for every run, and a replay
imports them too; workflows reach activities by name (baton/activity_names.py) instead."""

from __future__ import annotations

import inspect
import json
import os
import pkgutil
import subprocess
import sys
from importlib import import_module

import pytest
from temporalio import activity

import activities
import workflows
from baton import activity_names

HEAVY = ("fastapi", "sqlalchemy", "openai", "anthropic", "numpy", "httpx", "httpx2")
WORKFLOW_MODULES = sorted(
    f"workflows.{module.name}" for module in pkgutil.iter_modules(workflows.__path__)
)


def modules_loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter holds after importing `module`, as this test process
    would find them."""
    script = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", WORKFLOW_MODULES)
def test_a_workflow_module_imports_no_io_library(module: str) -> None:
    loaded = set(modules_loaded_by(module))
    assert module in loaded
    heavy = [name for name in HEAVY if name in loaded]
    assert not heavy, f"importing {module} loads {heavy}"


def registered_activity_names() -> set[str]:
    names: set[str] = set()
    for info in pkgutil.iter_modules(activities.__path__):
        module = import_module(f"activities.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for _, method in inspect.getmembers(cls, inspect.isfunction):
                definition = activity._Definition.from_callable(method)
                if definition is not None and definition.name is not None:
                    names.add(definition.name)
    return names


def test_workflows_call_activities_by_the_names_they_are_registered_under() -> None:
    named = {
        value
        for key, value in vars(activity_names).items()
        if key.isupper() and isinstance(value, str)
    }
    assert named == registered_activity_names()
