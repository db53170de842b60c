"""Every kind of step a tool may have, each in one `StepKind` record: its model, how it runs,
what the Temporal UI says of it, whether it may read secrets and whether it may run in an
enrichment. Everything that treats steps of one kind differently from another reads it here.

A kind runs in one of three places:

- in the interpreter itself (`compute`): a pure step, computed wherever the tool runs (in the
  workflow, so it costs no round trip to the server; in an enrichment batch, in process);
- as an activity (`activity`): an I/O step. In a tool run the workflow calls the activity of
  that name (activities/); an enrichment batch calls the same code directly;
- in the workflow only (neither): a step that needs a workflow of its own (a durable timer,
  a child workflow), run by ToolRunWorkflow's executor.

Adding a kind: its model in baton/domain/tools.py (and in the `Step` union) and its entry
here; a pure kind needs nothing more (its templated fields are checked when a tool is saved,
from the entry). An I/O kind also needs its activity (a name in baton/activity_names.py, its
code in activities/, registered by the worker) and, to run in an enrichment too, its executor
in StepRunner's table (activities/steps.py). A kind run by the workflow itself needs an
executor method in ToolRunWorkflow. A save-time rule of its own (an expression that must
parse, a tool that must exist) goes in baton/domain/tool_checks.py."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar, get_args
from urllib.parse import urlsplit

import jmespath
import jmespath.exceptions

from baton import activity_names
from baton.domain.tools import (
    CodeStep,
    DelayStep,
    EmailSendStep,
    HttpStep,
    KnowledgeDeleteStep,
    KnowledgeInsertStep,
    KnowledgeSearchStep,
    KnowledgeUpdateStep,
    LlmStep,
    McpStep,
    SlackPostStep,
    Step,
    StepBase,
    TemplateStep,
    ToolCallStep,
    TransformStep,
)
from baton.steps.errors import StepError

S = TypeVar("S", bound=StepBase)

# Renders one template against the step's context, on the run's template budget; raises
# StepError when the template fails.
Render = Callable[[str], Any]


@dataclass(frozen=True)
class StepKind(Generic[S]):
    # Its `type` is the one its model declares (`type: Literal["http"]`).
    model: builtins.type[S]
    # What the step does, after "step <name>: " in the Temporal UI: "http GET example.com".
    summary: Callable[[S], str] | None = None
    # A pure step: its output from its own fields, rendered by `Render`.
    compute: Callable[[S, Render], Any] | None = None
    # An I/O step: the activity that runs it in a tool run, and that activity's heartbeat
    # timeout (None: it sends none).
    activity: str | None = None
    heartbeat: timedelta | None = None
    # Whether an enrichment batch may run it for a row, in process. Steps that need a
    # workflow of their own cannot; those that write to knowledge sets must not (a set is
    # being enriched).
    in_enrichment: bool = False
    # The fields whose templates may read `{{ secrets.<name> }}` (those that send it out of
    # Baton). None: the step is never given secrets.
    secret_fields: Callable[[str], bool] | None = None
    # String fields that are not templates (code, JMESPath, JSON Schema).
    literal_fields: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.compute is not None and self.activity is not None:
            raise ValueError(f"step kind {self.type}: computed here or an activity, not both")
        if self.runs_in_workflow_only and self.in_enrichment:
            raise ValueError(f"step kind {self.type}: an enrichment has no workflow to run it")

    @property
    def type(self) -> str:
        declared = get_args(self.model.model_fields["type"].annotation)
        if len(declared) != 1 or not isinstance(declared[0], str):
            raise TypeError(f"{self.model.__name__}.type must be one Literal string")
        return declared[0]

    @property
    def reads_secrets(self) -> bool:
        return self.secret_fields is not None

    @property
    def runs_in_workflow_only(self) -> bool:
        return self.compute is None and self.activity is None

    def describe(self, step: S) -> str:
        return self.summary(step) if self.summary is not None else self.type


def _template(step: TemplateStep, render: Render) -> Any:
    return render(step.template)


def _transform(step: TransformStep, render: Render) -> Any:
    value = render(step.input)
    try:
        return jmespath.search(step.expression, value)
    except jmespath.exceptions.JMESPathError as exc:
        raise StepError(f"transform failed: {exc}") from exc


def _http_summary(step: HttpStep) -> str:
    host = urlsplit(step.url).hostname or step.url[:60]
    return f"http {step.method} {host}"


def _http_sends(field: str) -> bool:
    """The fields of an http step that send their value out of Baton: only those may read a
    secret."""
    return field in ("url", "body") or field.startswith(("headers.", "query.", "body.", "body["))


def _knowledge_summary(
    step: KnowledgeSearchStep | KnowledgeInsertStep | KnowledgeUpdateStep | KnowledgeDeleteStep,
) -> str:
    return f"{step.type} {step.knowledge_set}"


_HEARTBEAT = timedelta(seconds=10)

_KINDS: tuple[StepKind[Any], ...] = (
    StepKind(
        LlmStep,
        summary=lambda step: f"llm {step.model}",
        activity=activity_names.STEP_LLM,
        heartbeat=_HEARTBEAT,
        in_enrichment=True,
        literal_fields=frozenset({"json_schema"}),
    ),
    StepKind(
        HttpStep,
        summary=_http_summary,
        activity=activity_names.STEP_HTTP,
        heartbeat=_HEARTBEAT,
        in_enrichment=True,
        secret_fields=_http_sends,
    ),
    StepKind(
        CodeStep,
        summary=lambda step: "code",
        activity=activity_names.STEP_CODE,
        heartbeat=_HEARTBEAT,
        in_enrichment=True,
        literal_fields=frozenset({"code"}),
    ),
    StepKind(TemplateStep, compute=_template, in_enrichment=True),
    StepKind(
        TransformStep,
        compute=_transform,
        in_enrichment=True,
        literal_fields=frozenset({"expression"}),
    ),
    StepKind(
        McpStep,
        summary=lambda step: f"mcp {step.integration}.{step.tool}",
        activity=activity_names.STEP_MCP,
        heartbeat=_HEARTBEAT,
    ),
    StepKind(
        SlackPostStep,
        summary=lambda step: f"slack_post {step.integration} {step.channel[:60]}",
        activity=activity_names.STEP_SLACK_POST,
    ),
    StepKind(
        EmailSendStep,
        summary=lambda step: f"email_send {step.integration} to {len(step.to)}",
        activity=activity_names.STEP_EMAIL_SEND,
        heartbeat=_HEARTBEAT,
    ),
    StepKind(ToolCallStep),
    StepKind(DelayStep),
    StepKind(
        KnowledgeSearchStep,
        summary=_knowledge_summary,
        activity=activity_names.STEP_KNOWLEDGE_SEARCH,
    ),
    StepKind(
        KnowledgeInsertStep,
        summary=_knowledge_summary,
        activity=activity_names.STEP_KNOWLEDGE_INSERT,
    ),
    StepKind(
        KnowledgeUpdateStep,
        summary=_knowledge_summary,
        activity=activity_names.STEP_KNOWLEDGE_UPDATE,
    ),
    StepKind(
        KnowledgeDeleteStep,
        summary=_knowledge_summary,
        activity=activity_names.STEP_KNOWLEDGE_DELETE,
    ),
)

STEP_KINDS: Mapping[str, StepKind[Any]] = {kind.type: kind for kind in _KINDS}

# The kinds an enrichment batch runs for a row.
ENRICHMENT_STEP_TYPES = frozenset(kind.type for kind in _KINDS if kind.in_enrichment)


def kind_of(step: Step) -> StepKind[Any]:
    return STEP_KINDS[step.type]


def _check_every_step_model_has_its_kind() -> None:
    """The `Step` union and the registry list the same models, each once: a model without an
    entry would fail its first run, an entry without a model is dead."""
    union, _ = get_args(Step)
    models = set(get_args(union))
    registered = {kind.model for kind in _KINDS}
    if models != registered or len(STEP_KINDS) != len(_KINDS):
        missing = sorted(m.__name__ for m in models - registered)
        extra = sorted(m.__name__ for m in registered - models)
        raise RuntimeError(f"step kinds: no entry for {missing}; not in the Step union: {extra}")


_check_every_step_model_has_its_kind()
