"""Tools: typed params, a chain of steps, an output. A definition holds no secret value, only
secret names, so it may travel in workflow history."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from baton.domain.mail import email_address
from baton.domain.models import ModelRef
from baton.domain.rerank import RerankOptions, rerank_option

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class ParamType(StrEnum):
    text = "text"
    long_text = "long_text"
    number = "number"
    integer = "integer"
    boolean = "boolean"
    enum = "enum"
    list_of_text = "list_of_text"
    json = "json"
    file_url = "file_url"
    knowledge_set = "knowledge_set"
    secret = "secret"


class ToolParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER)
    type: ParamType = ParamType.text
    description: str = ""
    required: bool = True
    default: Any = None
    options: list[str] = Field(default_factory=list, description="The choices of an enum")
    json_schema: dict[str, Any] | None = Field(
        default=None, description="The JSON Schema a json param's value must match"
    )

    @model_validator(mode="after")
    def _enum_has_options(self) -> ToolParam:
        if self.type is ParamType.enum and not self.options:
            raise ValueError(f"param {self.name!r}: an enum needs options")
        return self


class StepBase(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=IDENTIFIER)
    if_: str | None = Field(default=None, alias="if", description="Skip the step when false")
    foreach: str | None = Field(
        default=None, description="A list to run the step over: {{ foreach.item }}, .index"
    )
    concurrency: int = Field(default=4, ge=1, le=100, description="foreach items at a time")
    continue_on_error: bool = False
    retries: int = Field(default=2, ge=0, le=20, description="Retries after a failed attempt")
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)

    def secret_names(self) -> set[str]:
        """The secrets the step names outside its templates."""
        return set()


class LlmStep(StepBase):
    type: Literal["llm"]
    prompt: str = Field(min_length=1)
    system_prompt: str = ""
    model: ModelRef = "scripted:echo"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    json_schema: dict[str, Any] | None = Field(
        default=None, description="When set, the answer must be JSON matching this schema"
    )
    integration: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="The project integration that holds the key; by default the project's "
        "integration for the model's provider, else the server's key",
    )


class HttpStep(StepBase):
    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    auth_secret: str | None = Field(
        default=None, description="A project secret sent as 'Authorization: Bearer <secret>'"
    )
    response: Literal["auto", "json", "text"] = "auto"
    fail_on_error_status: bool = True
    max_response_bytes: int = Field(default=5_000_000, ge=1, le=50_000_000)

    def secret_names(self) -> set[str]:
        return {self.auth_secret} if self.auth_secret is not None else set()


class CodeStep(StepBase):
    type: Literal["code"]
    code: str = Field(min_length=1, description="Python; `inputs` holds params, steps, foreach")


class TemplateStep(StepBase):
    type: Literal["template"]
    template: str


class TransformStep(StepBase):
    type: Literal["transform"]
    input: str = Field(description="A template giving the JSON value to transform")
    expression: str = Field(min_length=1, description="A JMESPath expression")


class ToolCallStep(StepBase):
    type: Literal["tool"]
    tool_id: str
    params: dict[str, Any] = Field(default_factory=dict)


class DelayStep(StepBase):
    type: Literal["delay"]
    seconds: float = Field(ge=0, le=30 * 24 * 3600)


class McpStep(StepBase):
    """Calls a tool of the project's MCP integration; output: the result's structured
    content, else its text. A result the server marks `isError` fails the step."""

    type: Literal["mcp"]
    integration: str = Field(pattern=IDENTIFIER, description="The project's MCP integration")
    tool: str = Field(min_length=1, max_length=200, description="The server's tool")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The tool's arguments; strings may be templates"
    )


class SlackPostStep(StepBase):
    """Posts a message as the bot of the project's Slack integration; output {channel, ts}.
    A refusal by Slack (`channel_not_found`, `invalid_auth`, ...) fails the step naming it."""

    type: Literal["slack_post"]
    integration: str = Field(pattern=IDENTIFIER, description="The project's Slack integration")
    channel: str = Field(
        min_length=1, max_length=200, description="A channel id (C...), or a template giving it"
    )
    text: str = Field(min_length=1, max_length=40_000, description="The message; a template")
    thread_ts: str | None = Field(
        default=None,
        max_length=200,
        description="Posts in the thread of this message (its ts), when set; a template",
    )


class EmailSendStep(StepBase):
    """Sends one mail through the project's SMTP integration; output {message_id, accepted}
    (the recipients the server took). A refusal (login, sender, every recipient) fails the
    step naming it."""

    type: Literal["email_send"]
    integration: str = Field(pattern=IDENTIFIER, description="The project's SMTP integration")
    to: list[str] = Field(
        min_length=1, max_length=100, description="Addresses, or templates giving one each"
    )
    subject: str = Field(max_length=2000, description="A template")
    text: str = Field(max_length=1_000_000, description="The plain-text body, a template")
    html: str | None = Field(
        default=None, max_length=1_000_000, description="An HTML alternative, a template"
    )

    @model_validator(mode="after")
    def _literal_recipients_are_addresses(self) -> EmailSendStep:
        """A recipient written out is checked now; a template is checked once rendered."""
        for index, recipient in enumerate(self.to):
            if "{{" not in recipient and "{%" not in recipient:
                try:
                    email_address(recipient)
                except ValueError as exc:
                    raise ValueError(f"to[{index}]: {exc}") from None
        return self


class KnowledgeStepBase(StepBase):
    knowledge_set: str = Field(
        min_length=1, description="The set's id, or a template giving it: {{ params.set }}"
    )


class KnowledgeSearchStep(KnowledgeStepBase):
    """Hits, best first: [{row_id, row, score}]."""

    type: Literal["knowledge_search"]
    query: str = Field(min_length=1)
    # None: hybrid, or lexical on a set without an embedding provider.
    mode: Literal["lexical", "vector", "hybrid"] | None = None
    top_k: int = Field(default=5, ge=1, le=100)
    filters: list[dict[str, Any]] = Field(
        default_factory=list,
        description="[{column, op, value}]; op: eq ne gt gte lt lte contains exists",
    )
    rerank: RerankOptions | None = Field(
        default=None, description="true (local), or rerank options as a search takes them"
    )

    _rerank_shorthand = field_validator("rerank", mode="before")(rerank_option)


class KnowledgeInsertStep(KnowledgeStepBase):
    """Inserts one row (a JSON object) or several (a list); output {row_ids}."""

    type: Literal["knowledge_insert"]
    rows: Any = Field(description="A row, a list of rows, or a template giving either")


class KnowledgeUpdateStep(KnowledgeStepBase):
    """Merges `data` into the row; output: the row."""

    type: Literal["knowledge_update"]
    row_id: str = Field(min_length=1, description="The row's id, or a template giving it")
    data: dict[str, Any]


class KnowledgeDeleteStep(KnowledgeStepBase):
    type: Literal["knowledge_delete"]
    row_id: str = Field(min_length=1, description="The row's id, or a template giving it")


Step = Annotated[
    LlmStep
    | HttpStep
    | CodeStep
    | TemplateStep
    | TransformStep
    | ToolCallStep
    | DelayStep
    | McpStep
    | SlackPostStep
    | EmailSendStep
    | KnowledgeSearchStep
    | KnowledgeInsertStep
    | KnowledgeUpdateStep
    | KnowledgeDeleteStep,
    Field(discriminator="type"),
]
# Each kind's entry in baton/steps/registry.py says how it runs, and where.


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    params: list[ToolParam] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1, max_length=100)
    output: str | None = Field(
        default=None, description="A template for the result; default: the last step's output"
    )

    def param(self, name: str) -> ToolParam | None:
        return next((p for p in self.params if p.name == name), None)

    def referenced_tools(self) -> set[str]:
        return {step.tool_id for step in self.steps if isinstance(step, ToolCallStep)}


class StepStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    skipped = "skipped"


class ToolRunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (ToolRunStatus.queued, ToolRunStatus.running)


_JSON_TYPES: dict[ParamType, dict[str, Any]] = {
    ParamType.text: {"type": "string"},
    ParamType.long_text: {"type": "string"},
    ParamType.number: {"type": "number"},
    ParamType.integer: {"type": "integer"},
    ParamType.boolean: {"type": "boolean"},
    ParamType.list_of_text: {"type": "array", "items": {"type": "string"}},
    ParamType.file_url: {"type": "string", "format": "uri"},
    ParamType.knowledge_set: {"type": "string", "description": "a knowledge set id"},
    ParamType.secret: {"type": "string", "description": "the name of a project secret"},
}


def param_json_schema(param: ToolParam) -> dict[str, Any]:
    if param.type is ParamType.enum:
        schema: dict[str, Any] = {"type": "string", "enum": list(param.options)}
    elif param.type is ParamType.json:
        schema = dict(param.json_schema or {})
    else:
        schema = dict(_JSON_TYPES[param.type])
    if param.description:
        schema["description"] = param.description
    if param.default is not None:
        schema["default"] = param.default
    return schema


def parameters_json_schema(spec: ToolSpec) -> dict[str, Any]:
    """What an LLM sees when it calls the tool."""
    return params_json_schema(spec.params)


def params_json_schema(params: Sequence[ToolParam]) -> dict[str, Any]:
    """Typed params as one JSON Schema object: a tool's, or an agent's task params."""
    return {
        "type": "object",
        "properties": {p.name: param_json_schema(p) for p in params},
        "required": [p.name for p in params if p.required and p.default is None],
        "additionalProperties": False,
    }
