"""Enrichment: a tool run over every row of a knowledge set, its outputs written to columns.

A job maps each tool param to a column or a template over the row, and each output column to
a JMESPath expression over the tool's output. A row counts as enriched once all its output
columns hold a value or its error column does, so a stopped or failed job, started again,
goes on where it was. No row data crosses the workflow/activity boundary: a batch activity
reads its rows, runs the tool in-process for each and returns counts."""

from __future__ import annotations

from typing import Annotated, Any

import jmespath
import jmespath.exceptions
from jinja2 import meta
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from baton import templating
from baton.domain.knowledge import JobStatus, KnowledgeColumn
from baton.domain.tools import IDENTIFIER, ToolSpec
from baton.errors import InvalidInput
from baton.steps.registry import ENRICHMENT_STEP_TYPES

# History per run stays in the hundreds of events, far from Temporal's limits.
BATCHES_PER_RUN = 50


ColumnName = Annotated[str, Field(pattern=IDENTIFIER)]


def enrichment_workflow_id(job_id: str) -> str:
    return f"enrich-{job_id}"


class InputSource(BaseModel):
    """Where a tool param's value comes from: a column of the row, or a template over it
    (`{{ row.title }} by {{ row.author }}`; `row_id` is the row's id)."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, pattern=IDENTIFIER)
    template: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> InputSource:
        if (self.column is None) == (self.template is None):
            raise ValueError("give either a column or a template")
        if self.template is not None:
            templating.parse(self.template)
        return self

    def value(
        self, row_id: int, row: dict[str, Any], *, budget: templating.Budget | None = None
    ) -> Any:
        if self.column is not None:
            return row.get(self.column)
        assert self.template is not None
        return templating.render(self.template, {"row": row, "row_id": row_id}, budget=budget)


class EnrichmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_id: str = Field(min_length=1)
    input_mapping: dict[ColumnName, InputSource] = Field(
        default_factory=dict, description="tool param -> {column} or {template}"
    )
    output_mapping: dict[ColumnName, str] = Field(
        min_length=1,
        description="column -> JMESPath over the tool's output ('@' for the whole output)",
    )
    error_column: str | None = Field(
        default=None, pattern=IDENTIFIER, description="Default: <first output column>_error"
    )
    concurrency: int = Field(default=8, ge=1, le=100, description="Rows run at a time")
    batch_size: int = Field(default=200, ge=1, le=1000, description="Rows per activity")

    @field_validator("output_mapping")
    @classmethod
    def _jmespath(cls, mapping: dict[str, str]) -> dict[str, str]:
        for column, expression in mapping.items():
            try:
                jmespath.compile(expression)
            except jmespath.exceptions.ParseError as exc:
                raise ValueError(f"output {column!r}: not valid JMESPath: {exc}") from exc
        return mapping

    @model_validator(mode="after")
    def _error_column_apart(self) -> EnrichmentCreate:
        if self.resolved_error_column in self.output_mapping:
            raise ValueError("the error column cannot also be an output column")
        return self

    @property
    def resolved_error_column(self) -> str:
        return self.error_column or f"{next(iter(self.output_mapping))}_error"


class EnrichmentPlan(BaseModel):
    """Everything a batch needs to run the tool for a row, pinned when the job is created."""

    job_id: str
    project_id: str
    set_id: str
    tool: ToolSpec
    input_mapping: dict[str, InputSource]
    output_mapping: dict[str, str]
    error_column: str
    snippets: dict[str, str] = Field(default_factory=dict)
    concurrency: int = 8
    batch_size: int = 200
    # Rows added after the job was created are not part of it.
    last_row_id: int = 0

    def is_enriched(self, row: dict[str, Any]) -> bool:
        if row.get(self.error_column) not in (None, ""):
            return True
        return all(row.get(column) not in (None, "") for column in self.output_mapping)


class EnrichmentProgress(BaseModel):
    """Carried across continue-as-new: rows up to `after_row_id` are behind us."""

    after_row_id: int = 0
    done: int = 0
    failed: int = 0
    total: int = 0
    batches: int = 0


class EnrichmentInput(BaseModel):
    plan: EnrichmentPlan
    progress: EnrichmentProgress = Field(default_factory=EnrichmentProgress)


class EnrichmentBatch(BaseModel):
    plan: EnrichmentPlan
    progress: EnrichmentProgress


class BatchOutcome(BaseModel):
    """Counts only, so history stays small whatever the rows hold. `done` and `failed` count
    the batch's rows enriched before it ran too: a retried batch counts the same."""

    last_row_id: int
    rows: int
    done: int
    failed: int
    exhausted: bool


class EnrichmentFinish(BaseModel):
    job_id: str
    status: JobStatus
    progress: EnrichmentProgress | None = None
    error: str | None = None


def check_enrichment(
    request: EnrichmentCreate, tool: ToolSpec, columns: list[KnowledgeColumn]
) -> None:
    """Every problem of a job before it starts, each naming its field, as one 422."""
    problems = _tool_problems(tool) + _input_problems(request, tool, columns)
    if columns:
        declared = {column.name for column in columns}
        problems += [
            (f"output_mapping.{name}", f"the set has no column {name!r}; add it first")
            for name in request.output_mapping
            if name not in declared
        ]
        if request.resolved_error_column not in declared:
            name = request.resolved_error_column
            problems.append(("error_column", f"the set has no column {name!r}; add it first"))
    if problems:
        field, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidInput(
            f"{field}: {message}{more}",
            details=[{"field": field, "message": message} for field, message in problems],
        )


def _tool_problems(tool: ToolSpec) -> list[tuple[str, str]]:
    """A batch runs a row's steps in process: only the kinds that may (`StepKind.in_enrichment`;
    not `tool` or `delay`, which need a workflow of their own, nor knowledge steps, which would
    write to sets while a set is being enriched)."""
    allowed = ", ".join(sorted(ENRICHMENT_STEP_TYPES))
    return [
        ("tool_id", f"step {step.name!r} is a {step.type} step; an enrichment runs {allowed}")
        for step in tool.steps
        if step.type not in ENRICHMENT_STEP_TYPES
    ]


def _input_problems(
    request: EnrichmentCreate, tool: ToolSpec, columns: list[KnowledgeColumn]
) -> list[tuple[str, str]]:
    declared = {column.name for column in columns}
    problems = [
        (f"input_mapping.{name}", f"the tool has no param {name!r}")
        for name in request.input_mapping
        if tool.param(name) is None
    ]
    problems += [
        (f"input_mapping.{param.name}", "a required param of the tool is not mapped")
        for param in tool.params
        if param.required and param.default is None and param.name not in request.input_mapping
    ]
    for name, source in request.input_mapping.items():
        if source.column is not None and declared and source.column not in declared:
            problems.append((f"input_mapping.{name}.column", f"no column {source.column!r}"))
        if source.template is not None:
            tree = templating.parse(source.template)
            for unknown in sorted(meta.find_undeclared_variables(tree) - {"row", "row_id"}):
                problems.append(
                    (f"input_mapping.{name}.template", f"unknown name {unknown!r}; use row")
                )
            missing = templating.references(source.template).of("row") - declared
            for column in sorted(missing if declared else set()):
                problems.append((f"input_mapping.{name}.template", f"no column {column!r}"))
    return problems
