"""What an agent is: the definition a task runs with."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from baton import templating
from baton.domain.knowledge import AgentKnowledge
from baton.domain.models import ModelRef
from baton.domain.secret_references import NOT_HERE, SECRETS, reads_secrets
from baton.domain.tools import IDENTIFIER, ToolParam
from baton.errors import InvalidInput


class Approval(StrEnum):
    auto = "auto"
    required = "required"
    # The model marks a call as needing approval through the `needs_approval` argument.
    agent_decides = "agent_decides"


class AgentTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_id: str
    approval: Approval = Approval.auto
    max_auto_runs: int | None = Field(
        default=None, ge=0, description="After this many automatic runs, ask for approval"
    )


class AgentMcp(BaseModel):
    """Tools of a project's MCP integration, offered to the model as `<integration>_<tool>`
    with the server's description and input schema, listed once when a task starts."""

    model_config = ConfigDict(extra="forbid")

    integration: str = Field(pattern=IDENTIFIER)
    tools: list[str] | None = Field(
        default=None, max_length=200, description="The tools offered; all of them when unset"
    )
    approval: Approval = Approval.auto
    max_auto_runs: int | None = Field(
        default=None, ge=0, description="After this many automatic runs, ask for approval"
    )


class AgentSpec(BaseModel):
    """The part of an agent a task pins when it starts. Holds no secret, so it may travel in
    workflow history."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(default="", max_length=100_000)
    model: ModelRef = "scripted:echo"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(default=None, ge=1, le=200_000)
    tools: list[AgentTool] = Field(default_factory=list)
    mcp: list[AgentMcp] = Field(default_factory=list, max_length=20)
    max_iterations: int = Field(default=10, ge=1, le=200, description="LLM calls per turn")
    autonomy_limit: int = Field(
        default=20, ge=1, le=500, description="Tool calls in a row before it must ask the user"
    )
    time_budget_seconds: float = Field(default=3600, gt=0, le=30 * 24 * 3600)
    max_credits_per_task: float | None = Field(
        default=None,
        gt=0,
        description="Vendor credits a task may spend before a person must approve going on "
        "(each approval allows as much again)",
    )
    max_actions_per_task: int | None = Field(
        default=None,
        ge=1,
        description="Tool runs (actions) a task may make before a person must approve going "
        "on (each approval allows as many again)",
    )
    idle_timeout_seconds: float = Field(
        default=0,
        ge=0,
        le=30 * 24 * 3600,
        description="How long a task waits for a follow-up after answering; 0 completes at once",
    )
    welcome_message: str = Field(default="", max_length=10_000)
    integration: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="The project integration that holds the model's key; by default the "
        "project's integration for the model's provider, else the server's key",
    )
    params: list[ToolParam] = Field(
        default_factory=list,
        description="Typed params a task starts with, read as {{ params.<name> }} by the "
        "system prompt and the welcome message",
    )
    knowledge: list[AgentKnowledge] = Field(
        default_factory=list,
        max_length=20,
        description="Knowledge sets the agent searches (a search tool) or reads (rows placed "
        "in its prompt up to a token budget)",
    )

    def snippet_names(self) -> set[str]:
        """The snippets its own texts read (its tools' are found through the tools)."""
        names: set[str] = set()
        for field in PARAM_TEXTS:
            try:
                names |= templating.references(getattr(self, field)).of("snippets")
            except templating.TemplateError:
                continue
        return names


PARAM_TEXTS = ("system_prompt", "welcome_message")
"""The agent's texts that may read its task params."""


def render_with_params(
    text: str,
    params: dict[str, Any],
    snippets: dict[str, str] | None = None,
    *,
    budget: templating.Budget | None = None,
) -> str:
    """A system prompt or welcome message with its `{{ params.<name> }}` and
    `{{ snippets.<name> }}` filled in. A text that reads neither is left as written. Pure, so
    a workflow may call it."""
    if "params" not in text and "snippets" not in text:
        return text
    if not templating.references(text).roots() & {"params", "snippets"}:
        return text
    context = {"params": params, "snippets": snippets or {}}
    return templating.render_text(text, context, budget=budget)


def check_param_references(spec: AgentSpec) -> None:
    """Refuses texts that read params the agent does not declare, or do not parse."""
    declared = {param.name for param in spec.params}
    for field in PARAM_TEXTS:
        text: str = getattr(spec, field)
        try:
            unknown = sorted(templating.references(text).of("params") - declared)
        except templating.TemplateError as exc:
            if "params" not in text:
                continue  # not a template of ours: kept as written
            raise InvalidInput(
                f"{field}: {exc}", details=[{"field": field, "message": str(exc)}]
            ) from exc
        if unknown:
            raise InvalidInput(
                f"{field}: reads params.{unknown[0]}, which the agent's params do not declare",
                details=[
                    {"field": field, "message": f"unknown param {name!r}"} for name in unknown
                ],
            )


def check_secret_references(spec: AgentSpec) -> None:
    """Refuses texts that read a project secret: they go to the model and to whoever reads
    the agent's tasks."""
    for field in PARAM_TEXTS:
        text: str = getattr(spec, field)
        if SECRETS not in text:
            continue
        try:
            tree = templating.parse(text)
        except templating.TemplateError:
            continue  # not a template of ours: never rendered
        if reads_secrets(tree):
            raise InvalidInput(
                f"{field}: {NOT_HERE}", details=[{"field": field, "message": NOT_HERE}]
            )


def tool_function_name(name: str) -> str:
    """A tool's name as the model sees it: what OpenAI and Anthropic accept."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_").lower()
    return (slug or "tool")[:64]
