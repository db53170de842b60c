"""LLM providers, spoken to over real HTTP by the official client libraries: local servers speak
OpenAI's and Anthropic's streaming wire protocols, quirks of real servers included."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpcore2
import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.llm import LlmActivities
from baton.domain.agents import AgentSpec
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import MODEL_KINDS
from baton.domain.llm import (
    LlmRequest,
    LlmResponse,
    Message,
    MessageRole,
    ProviderConfig,
    ToolCall,
    ToolDefinition,
)
from baton.domain.models import PROVIDERS, SCRIPTED_LABEL, SCRIPTED_PROVIDER
from baton.integrations import llm
from baton.integrations.llm import ProviderError, ProviderNotConfigured
from baton.logs import QUIET_LOGGERS, quiet_http_clients
from baton.services.provider_configs import project_provider_configs, settings_provider_configs
from baton.settings import Settings
from tests.fakes import KEY_PLACEHOLDER, FakeProvider, Reply, refused_port
from tests.fakes.anthropic_server import FakeAnthropic, ToolUse, message_start, stream_error
from tests.fakes.openai_server import FakeOpenAI, chunk, tool_calls, tool_delta, usage_chunk

KEY = "sk-test-0123456789abcdef"
WEATHER = ToolDefinition(
    name="get_weather",
    description="The weather in a city now.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
def openai(openai_server: FakeOpenAI) -> FakeOpenAI:
    openai_server.reset()
    return openai_server


@pytest.fixture
def anthropic(anthropic_server: FakeAnthropic) -> FakeAnthropic:
    anthropic_server.reset()
    return anthropic_server


def ask(model: str, text: str = "Hello", **fields: Any) -> LlmRequest:
    return LlmRequest(
        model=model, messages=[Message(role=MessageRole.user, content=text)], **fields
    )


class Deltas(list[str]):
    async def __call__(self, delta: str) -> None:
        self.append(delta)


def allowing(*origins: str) -> EgressPolicy:
    """The egress policy of an operator who allowed exactly these `host:port`s."""
    return EgressPolicy(allow_hosts=frozenset(origins))


def fake_config(server: FakeProvider) -> ProviderConfig:
    """A project's base URL pointing at the fake, allowed by its host and port only."""
    return ProviderConfig(
        api_key=KEY, base_url=server.base_url, egress=allowing(f"127.0.0.1:{server.port}")
    )


async def call_openai(server: FakeOpenAI, request: LlmRequest, **kwargs: Any) -> LlmResponse:
    return await llm.complete(request, config=fake_config(server), **kwargs)


async def call_anthropic(server: FakeAnthropic, request: LlmRequest, **kwargs: Any) -> LlmResponse:
    return await llm.complete(request, config=fake_config(server), **kwargs)


# --- OpenAI-compatible ---------------------------------------------------------------------


async def test_openai_text_streams_to_on_delta_in_order_with_usage(openai: FakeOpenAI):
    openai.reply_text("Bonjour", ", le ", "monde", prompt_tokens=21, completion_tokens=4)
    deltas = Deltas()
    request = LlmRequest(
        model="openai:gpt-test",
        messages=[
            Message(role=MessageRole.system, content="Be brief."),
            Message(role=MessageRole.user, content="Say hello in French."),
        ],
        temperature=0.3,
        max_tokens=50,
    )

    response = await call_openai(openai, request, on_delta=deltas)

    assert deltas == ["Bonjour", ", le ", "monde"]
    assert response.content == "Bonjour, le monde"
    assert response.tool_calls == []
    assert response.model == "openai:gpt-test"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 4)
    assert response.finish_reason == "stop"

    [sent] = openai.requests
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-test"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["temperature"] == 0.3
    # A custom base URL means a compatible server, which may know only `max_tokens`.
    assert sent.body["max_tokens"] == 50 and "max_completion_tokens" not in sent.body
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello in French."},
    ]
    assert "tools" not in sent.body


async def test_openai_receives_tools_and_the_transcript_of_earlier_calls(openai: FakeOpenAI):
    openai.reply_text("It is sunny in Paris.")
    request = LlmRequest(
        model="openai:gpt-test",
        messages=[
            Message(role=MessageRole.user, content="Weather in Paris?"),
            Message(
                role=MessageRole.assistant,
                tool_calls=[ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})],
            ),
            Message(
                role=MessageRole.tool, tool_call_id="call_1", name="get_weather", content="sunny"
            ),
        ],
        tools=[WEATHER],
        json_schema={"type": "object"},
    )

    await call_openai(openai, request)

    [sent] = openai.requests
    assert sent.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city now.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert sent.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}},
    }


TOOL_CALL_STREAMS = {
    "openai style: index on every delta, id and name on the first only": (
        [
            tool_calls(tool_delta(index=0, id="call_a", name="get_weather", arguments="")),
            tool_calls(tool_delta(index=0, arguments='{"ci')),
            tool_calls(tool_delta(index=0, arguments='ty": "Paris"}')),
            chunk({}, finish_reason="tool_calls"),
            usage_chunk(30, 12),
        ],
        [ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"})],
    ),
    "parallel calls with interleaved deltas": (
        [
            tool_calls(tool_delta(index=0, id="call_a", name="get_weather", arguments='{"city":')),
            tool_calls(tool_delta(index=1, id="call_b", name="get_weather", arguments='{"city":')),
            tool_calls(
                tool_delta(index=1, arguments=' "Oslo"}'), tool_delta(index=0, arguments=' "Rome"}')
            ),
            chunk({}, finish_reason="tool_calls"),
            usage_chunk(30, 12),
        ],
        [
            ToolCall(id="call_a", name="get_weather", arguments={"city": "Rome"}),
            ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
        ],
    ),
    "a whole call in one chunk": (
        [
            tool_calls(
                tool_delta(index=0, id="call_a", name="get_weather", arguments='{"city": "Lima"}'),
                finish_reason="tool_calls",
            ),
            usage_chunk(30, 12),
        ],
        [ToolCall(id="call_a", name="get_weather", arguments={"city": "Lima"})],
    ),
    "no index: calls told apart by id": (
        [
            tool_calls(tool_delta(id="call_a", name="get_weather", arguments='{"city": "Nice"}')),
            tool_calls(tool_delta(id="call_b", name="get_time", arguments="{}")),
            chunk({}, finish_reason="tool_calls"),
        ],
        [
            ToolCall(id="call_a", name="get_weather", arguments={"city": "Nice"}),
            ToolCall(id="call_b", name="get_time"),
        ],
    ),
    "no index, id on the first delta only": (
        [
            tool_calls(tool_delta(id="call_a", name="get_weather", arguments='{"city"')),
            tool_calls(tool_delta(arguments=': "Bern"}')),
            chunk({}, finish_reason="tool_calls"),
        ],
        [ToolCall(id="call_a", name="get_weather", arguments={"city": "Bern"})],
    ),
    "no index and no id: parallel deltas by position": (
        [
            tool_calls(
                tool_delta(name="get_weather", arguments='{"city": "Ulm"'),
                tool_delta(name="get_time"),
            ),
            tool_calls(tool_delta(arguments="}"), tool_delta(arguments="{}")),
            chunk({}, finish_reason="tool_calls"),
        ],
        [
            ToolCall(id="call_0", name="get_weather", arguments={"city": "Ulm"}),
            ToolCall(id="call_1", name="get_time"),
        ],
    ),
    "every call numbered index 0 but with its own id": (
        [
            tool_calls(
                tool_delta(index=0, id="call_a", name="get_weather", arguments='{"city": "Graz"}')
            ),
            tool_calls(
                tool_delta(index=0, id="call_b", name="get_weather", arguments='{"city": "Linz"}')
            ),
            chunk({}, finish_reason="tool_calls"),
        ],
        [
            ToolCall(id="call_a", name="get_weather", arguments={"city": "Graz"}),
            ToolCall(id="call_b", name="get_weather", arguments={"city": "Linz"}),
        ],
    ),
    "invalid JSON arguments are reported, not raised": (
        [
            tool_calls(
                tool_delta(index=0, id="call_a", name="get_weather", arguments='{"city": Par')
            ),
            chunk({}, finish_reason="tool_calls"),
        ],
        [
            ToolCall(
                id="call_a",
                name="get_weather",
                arguments_error=(
                    "the arguments are not valid JSON (Expecting value: line 1 column 10 "
                    '(char 9)): {"city": Par'
                ),
            )
        ],
    ),
    "arguments that are JSON but not an object": (
        [
            tool_calls(tool_delta(index=0, id="call_a", name="get_weather", arguments='["Paris"]')),
            chunk({}, finish_reason="tool_calls"),
        ],
        [
            ToolCall(
                id="call_a",
                name="get_weather",
                arguments_error='the arguments must be a JSON object, got ["Paris"]',
            )
        ],
    ),
}


@pytest.mark.parametrize("stream", TOOL_CALL_STREAMS.values(), ids=TOOL_CALL_STREAMS.keys())
async def test_openai_tool_calls_are_assembled_from_any_server_style(
    openai: FakeOpenAI, stream: tuple[list[dict[str, Any]], list[ToolCall]]
):
    chunks, expected = stream
    openai.reply_chunks(chunk({"role": "assistant", "content": None}), *chunks)
    deltas = Deltas()

    response = await call_openai(openai, ask("openai:gpt-test", tools=[WEATHER]), on_delta=deltas)

    assert response.tool_calls == expected
    assert response.content == "" and deltas == []
    assert response.finish_reason == "tool_calls"


async def test_openai_text_and_a_tool_call_in_one_answer_with_usage_in_the_last_chunk(
    openai: FakeOpenAI,
):
    openai.reply_chunks(
        chunk({"role": "assistant", "content": "Let me check."}),
        chunk({"content": None}),
        tool_calls(
            tool_delta(index=0, id="call_a", name="get_weather", arguments='{"city": "Rome"}')
        ),
        chunk({}, finish_reason="tool_calls"),
        usage_chunk(40, 15),
    )
    deltas = Deltas()

    response = await call_openai(openai, ask("openai:gpt-test", tools=[WEATHER]), on_delta=deltas)

    assert deltas == ["Let me check."]
    assert response.content == "Let me check."
    assert [c.name for c in response.tool_calls] == ["get_weather"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (40, 15)


async def test_openai_reports_the_prompt_tokens_it_read_from_cache(openai: FakeOpenAI):
    openai.reply_text("Hi", prompt_tokens=1200, completion_tokens=3, cached_tokens=1024)

    response = await call_openai(openai, ask("openai:gpt-test"))

    assert response.usage.model_dump() == {
        "input_tokens": 1200,
        "output_tokens": 3,
        "cached_input_tokens": 1024,
    }


async def test_anthropic_counts_cache_reads_as_input_and_as_cached_input(
    anthropic: FakeAnthropic,
):
    # Anthropic's input_tokens leave out the cache reads; Baton's input tokens include them.
    anthropic.reply("Hi", input_tokens=20, output_tokens=4, cache_read_input_tokens=2048)

    response = await call_anthropic(anthropic, ask("anthropic:claude-test"))

    assert response.usage.model_dump() == {
        "input_tokens": 2068,
        "output_tokens": 4,
        "cached_input_tokens": 2048,
    }


async def test_openai_without_a_key_or_a_base_url_is_not_configured():
    with pytest.raises(ProviderNotConfigured, match="BATON_OPENAI_API_KEY") as raised:
        await llm.complete(ask("openai:gpt-test"), config=None)
    assert raised.value.retryable is False


# --- errors ---------------------------------------------------------------------------------


async def test_a_429_is_retryable_after_the_delay_the_provider_asked_for(openai: FakeOpenAI):
    openai.reply_error(429, "Rate limit reached", headers={"Retry-After": "7"})

    with pytest.raises(ProviderError) as raised:
        await call_openai(openai, ask("openai:gpt-test"))

    error = raised.value
    assert (error.status, error.retryable, error.retry_after) == (429, True, 7.0)
    assert error.message == "openai answered HTTP 429: Rate limit reached"


async def test_retry_after_may_be_an_http_date(openai: FakeOpenAI):
    when = datetime.now(UTC) + timedelta(seconds=30)
    openai.reply_error(503, "Busy", headers={"Retry-After": format_datetime(when, usegmt=True)})

    with pytest.raises(ProviderError) as raised:
        await call_openai(openai, ask("openai:gpt-test"))

    assert raised.value.retryable
    assert raised.value.retry_after is not None and 25 < raised.value.retry_after <= 30


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (502, True), (408, True), (409, True), (400, False), (404, False), (422, False)],
)
async def test_server_errors_retry_and_request_errors_do_not(
    openai: FakeOpenAI, status: int, retryable: bool
):
    openai.reply_error(status, "something went wrong")

    with pytest.raises(ProviderError) as raised:
        await call_openai(openai, ask("openai:gpt-test"))

    assert (raised.value.status, raised.value.retryable) == (status, retryable)
    assert raised.value.retry_after is None


async def test_a_500_then_success_succeeds_on_the_next_call(openai: FakeOpenAI):
    openai.reply_error(500, "The server had an error")
    openai.reply_text("Recovered.")

    with pytest.raises(ProviderError):
        await call_openai(openai, ask("openai:gpt-test"))
    response = await call_openai(openai, ask("openai:gpt-test"))

    assert response.content == "Recovered."
    assert len(openai.requests) == 2  # the client itself never retries


async def test_a_refused_connection_is_retryable():
    port = refused_port()
    config = ProviderConfig(
        api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", egress=allowing(f"127.0.0.1:{port}")
    )

    with pytest.raises(ProviderError) as raised:
        await llm.complete(ask("openai:gpt-test"), config=config)

    assert (raised.value.status, raised.value.retryable) == (None, True)
    assert "the connection to openai at http://127.0.0.1:" in raised.value.message
    assert KEY not in raised.value.message


async def test_a_stream_cut_off_midway_is_retryable(openai: FakeOpenAI, anthropic: FakeAnthropic):
    openai.queue(Reply(events=[(None, json.dumps(chunk({"content": "Half an"})))], cut=True))
    _, start = message_start(10)
    anthropic.queue(Reply(events=[("message_start", json.dumps(start))], cut=True))

    with pytest.raises(ProviderError) as from_openai:
        await call_openai(openai, ask("openai:gpt-test"))
    with pytest.raises(ProviderError) as from_anthropic:
        await call_anthropic(anthropic, ask("anthropic:claude-test"))

    for error in (from_openai.value, from_anthropic.value):
        assert (error.status, error.retryable) == (None, True)
        assert "peer closed connection" in error.message


async def test_the_api_key_never_appears_in_an_error_even_when_the_provider_quotes_it(
    openai: FakeOpenAI, anthropic: FakeAnthropic
):
    openai.reply_error(401, f"Incorrect API key provided: {KEY_PLACEHOLDER}.")
    anthropic.reply_error(401, f"invalid x-api-key {KEY_PLACEHOLDER}")

    with pytest.raises(ProviderError) as from_openai:
        await call_openai(openai, ask("openai:gpt-test"))
    with pytest.raises(ProviderError) as from_anthropic:
        await call_anthropic(anthropic, ask("anthropic:claude-test"))

    for error in (from_openai.value, from_anthropic.value):
        assert error.status == 401 and not error.retryable
        assert KEY not in str(error) and KEY not in repr(error.details)
        assert "[redacted]" in error.message
        assert "check the API key" in error.message


# --- Guarded base URLs ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_base_url_on_loopback_is_refused_before_the_key_is_sent(
    provider: str, openai: FakeOpenAI, anthropic: FakeAnthropic
):
    server: FakeProvider = openai if provider == "openai" else anthropic
    # Whatever the internal server would have answered, it is never asked.
    server.reply_error(500, "internal: db password is hunter2")
    config = ProviderConfig(api_key=KEY, base_url=server.base_url)

    with pytest.raises(ProviderError) as raised:
        await llm.complete(ask(f"{provider}:test"), config=config)

    error = raised.value
    assert server.requests == []
    assert (error.status, error.retryable) == (None, False)
    assert error.message == (
        f"{provider} at {server.base_url} was not called: 127.0.0.1 is a loopback address; "
        f"add 127.0.0.1:{server.port} to BATON_HTTP_ALLOW_HOSTS or the network to "
        "BATON_HTTP_ALLOW_NETWORKS to allow it"
    )
    assert "hunter2" not in error.message and KEY not in error.message


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata service's address"),
        ("http://10.0.0.7:8000/v1", "10.0.0.7 is a private address"),
        ("http://[::1]:11434/v1", "::1 is a loopback address"),
        ("http://2130706433/v1", "resolves to 127.0.0.1, a loopback address"),
    ],
)
async def test_a_base_url_on_an_internal_address_is_never_dialled(
    base_url: str, reason: str, monkeypatch: pytest.MonkeyPatch
):
    dialled: list[str] = []

    async def connect_tcp(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        dialled.append(f"{host}:{port}")
        raise httpcore2.ConnectError("no connection may be made in this test")

    monkeypatch.setattr(httpcore2.AnyIOBackend, "connect_tcp", connect_tcp)
    for model in ("openai:test", "anthropic:test"):
        with pytest.raises(ProviderError) as raised:
            await llm.complete(ask(model), config=ProviderConfig(api_key=KEY, base_url=base_url))
        assert reason in raised.value.message and not raised.value.retryable
    assert dialled == []


async def test_a_bare_host_allow_entry_does_not_open_the_providers_port(openai: FakeOpenAI):
    openai.reply_text("Should not be seen.")
    for policy in (allowing("127.0.0.1"), allowing("127.0.0.1:1")):
        config = ProviderConfig(api_key=KEY, base_url=openai.base_url, egress=policy)
        with pytest.raises(ProviderError, match=f"add 127.0.0.1:{openai.port} to BATON_HTTP"):
            await llm.complete(ask("openai:gpt-test"), config=config)
    assert openai.requests == []


async def test_a_provider_that_redirects_does_not_carry_the_key_elsewhere(
    openai: FakeOpenAI, anthropic: FakeAnthropic
):
    # Both fakes are allowed; the first answers with a redirect to the second.
    elsewhere = f"{anthropic.base_url}/v1/messages"
    openai.queue(Reply(status=307, error_body={}, headers={"location": elsewhere}))
    config = ProviderConfig(
        api_key=KEY,
        base_url=openai.base_url,
        egress=allowing(f"127.0.0.1:{openai.port}", f"127.0.0.1:{anthropic.port}"),
    )

    with pytest.raises(ProviderError) as raised:
        await llm.complete(ask("openai:gpt-test"), config=config)

    assert raised.value.status == 307
    assert len(openai.requests) == 1 and anthropic.requests == []


async def test_the_operators_own_base_url_from_settings_is_trusted(openai: FakeOpenAI):
    openai.reply_text("From the operator's server.")
    settings = Settings(openai_api_key=KEY, openai_base_url=openai.base_url)
    config = await settings_provider_configs(settings)("openai")
    assert config is not None and config.trusted

    response = await llm.complete(ask("openai:gpt-test"), config=config)

    assert response.content == "From the operator's server."


async def test_a_provider_call_logs_no_url_at_info(
    openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
):
    def urls_logged() -> list[str]:
        return [
            f"{r.name} {r.levelname}: {r.getMessage()}"
            for r in caplog.records
            if str(openai.port) in r.getMessage()
        ]

    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        with caplog.at_level(logging.INFO):
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.NOTSET)
            openai.reply_text("Loud.")
            await call_openai(openai, ask("openai:gpt-test"))
            # Left alone, the SDKs' transport writes the provider's URL at INFO.
            assert any(line.startswith("httpx2 INFO") for line in urls_logged())
            caplog.clear()

            quiet_http_clients()  # what configure_logging() does in every Baton process
            openai.reply_text("Quiet.")
            await call_openai(openai, ask("openai:gpt-test"))
            assert urls_logged() == []
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# --- Anthropic ------------------------------------------------------------------------------


async def test_anthropic_text_streams_to_on_delta_with_usage_and_the_system_prompt_apart(
    anthropic: FakeAnthropic,
):
    anthropic.reply("Hello", " there", input_tokens=25, output_tokens=6)
    deltas = Deltas()
    request = LlmRequest(
        model="anthropic:claude-test",
        messages=[
            Message(role=MessageRole.system, content="Be brief."),
            Message(role=MessageRole.user, content="Greet me."),
        ],
        temperature=0.7,
    )

    response = await call_anthropic(anthropic, request, on_delta=deltas)

    assert deltas == ["Hello", " there"]
    assert response.content == "Hello there"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (25, 6)
    assert response.finish_reason == "end_turn"
    [sent] = anthropic.requests
    assert sent.credential == KEY
    assert "anthropic-version" in sent.headers
    assert sent.body["model"] == "claude-test"
    assert sent.body["system"] == "Be brief."
    assert sent.body["messages"] == [{"role": "user", "content": "Greet me."}]
    assert sent.body["stream"] is True
    assert sent.body["max_tokens"] == 4096
    # The API version the SDK speaks refuses sampling parameters.
    assert "temperature" not in sent.body


async def test_anthropic_tool_use_blocks_become_tool_calls(anthropic: FakeAnthropic):
    anthropic.reply(
        "Checking both.",
        tool_uses=(
            ToolUse("toolu_1", "get_weather", ('{"ci', 'ty": ', '"Paris"}')),
            ToolUse("toolu_2", "get_weather", ('{"city": "Oslo"}',)),
            ToolUse("toolu_3", "get_time", ()),
            ToolUse("toolu_4", "get_weather", ('{"city": ',)),
        ),
    )

    response = await call_anthropic(anthropic, ask("anthropic:claude-test", tools=[WEATHER]))

    assert response.content == "Checking both."
    assert response.finish_reason == "tool_use"
    assert response.tool_calls[:3] == [
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Oslo"}),
        ToolCall(id="toolu_3", name="get_time"),
    ]
    broken = response.tool_calls[3]
    assert broken.arguments == {} and broken.arguments_error is not None
    assert "not valid JSON" in broken.arguments_error
    [sent] = anthropic.requests
    assert sent.body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city now.",
            "input_schema": WEATHER.parameters,
        }
    ]


async def test_anthropic_gets_tool_results_as_blocks_in_the_next_user_message(
    anthropic: FakeAnthropic,
):
    anthropic.reply("Paris is sunny, Oslo rainy.")
    request = LlmRequest(
        model="anthropic:claude-test",
        messages=[
            Message(role=MessageRole.system, content="You know the weather."),
            Message(role=MessageRole.user, content="Paris and Oslo?"),
            Message(
                role=MessageRole.assistant,
                content="Checking.",
                tool_calls=[
                    ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Oslo"}),
                ],
            ),
            Message(role=MessageRole.tool, tool_call_id="toolu_1", content="sunny"),
            Message(role=MessageRole.tool, tool_call_id="toolu_2", content="rainy"),
        ],
        tools=[WEATHER],
    )

    await call_anthropic(anthropic, request)

    [sent] = anthropic.requests
    assert sent.body["system"] == "You know the weather."
    assert sent.body["messages"] == [
        {"role": "user", "content": "Paris and Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
            ],
        },
    ]


async def test_anthropic_errors_map_like_every_provider(anthropic: FakeAnthropic):
    anthropic.reply_error(
        429, "Number of requests has exceeded your rate limit", headers={"retry-after": "3"}
    )
    anthropic.reply_error(529, "Overloaded")
    anthropic.reply_error(400, "messages: roles must alternate")

    outcomes = []
    for _ in range(3):
        with pytest.raises(ProviderError) as raised:
            await call_anthropic(anthropic, ask("anthropic:claude-test"))
        outcomes.append((raised.value.status, raised.value.retryable, raised.value.retry_after))

    assert outcomes == [(429, True, 3.0), (529, True, None), (400, False, None)]


async def test_anthropic_stream_failing_midway_is_retryable(anthropic: FakeAnthropic):
    anthropic.reply_events(message_start(10), stream_error("Overloaded"))

    with pytest.raises(ProviderError) as raised:
        await call_anthropic(anthropic, ask("anthropic:claude-test"))

    assert raised.value.retryable
    assert "failed while streaming" in raised.value.message and "Overloaded" in raised.value.message


# --- scripted -------------------------------------------------------------------------------


async def test_scripted_tools_calls_the_tools_named_in_the_user_message():
    deltas = Deltas()
    request = ask(
        "scripted:tools",
        'Please:\ncall get_weather {"city": "Paris"}\ncall get_time\ncall get_weather {oops',
        tools=[WEATHER],
    )

    response = await llm.complete(request, on_delta=deltas)

    assert response.tool_calls[:2] == [
        ToolCall(id="scripted-0-0", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="scripted-0-1", name="get_time"),
    ]
    assert response.tool_calls[2].arguments_error is not None
    assert response.finish_reason == "tool_calls"
    assert response.content.startswith(SCRIPTED_LABEL)
    assert "".join(deltas) == response.content and len(deltas) > 1


async def test_scripted_tools_answers_with_the_tool_results():
    calls = [
        ToolCall(id="scripted-0-0", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="scripted-0-1", name="get_time"),
    ]
    request = LlmRequest(
        model="scripted:tools",
        messages=[
            Message(role=MessageRole.user, content="call get_weather {}\ncall get_time"),
            Message(role=MessageRole.assistant, tool_calls=calls),
            Message(role=MessageRole.tool, tool_call_id="scripted-0-0", content="sunny"),
            Message(role=MessageRole.tool, tool_call_id="scripted-0-1", content="noon"),
        ],
        tools=[WEATHER],
    )

    response = await llm.complete(request)

    assert response.tool_calls == []
    assert response.content == f"{SCRIPTED_LABEL} Tool results:\nget_weather: sunny\nget_time: noon"


@pytest.mark.parametrize(
    ("text", "tools"),
    [("Just chatting.", [WEATHER]), ("call get_weather {}", [])],
    ids=["no call line", "no tools offered"],
)
async def test_scripted_tools_otherwise_echoes(text: str, tools: list[ToolDefinition]):
    response = await llm.complete(ask("scripted:tools", text, tools=tools))

    assert response.tool_calls == []
    assert response.content == f"{SCRIPTED_LABEL} You said: {text}"


async def test_scripted_echo_streams_in_chunks():
    deltas = Deltas()

    response = await llm.complete(
        ask("scripted:echo", "one two three four five six"), on_delta=deltas
    )

    assert len(deltas) > 1 and "".join(deltas) == response.content
    assert response.usage.output_tokens > 0


def test_agents_may_use_openai_anthropic_and_both_scripted_models():
    for model in (
        "openai:gpt-4o-mini",
        "openai:llama3.1:8b",
        "anthropic:claude-sonnet-4-5",
        "scripted:tools",
    ):
        assert AgentSpec(name="a", model=model).model == model


def test_every_provider_has_an_adapter_and_each_that_needs_a_key_an_integration_kind():
    assert set(llm.ADAPTERS) == set(PROVIDERS)
    needs_a_key = {name for name, provider in PROVIDERS.items() if not provider.offline}
    assert {kind.value for kind in MODEL_KINDS} == needs_a_key
    with pytest.raises(
        ValueError, match="the scripted provider offers echo, tools, search, not 'gpt'"
    ):
        AgentSpec(name="a", model="scripted:gpt")
    with pytest.raises(ValueError, match="provider 'mistral' is not available"):
        AgentSpec(name="a", model="mistral:large")


async def test_an_offline_provider_is_given_no_config_and_reads_no_database():
    """The project's resolver returns before it opens a session (it has none to open here)."""
    resolve = project_provider_configs(None, Settings())  # type: ignore[arg-type]
    assert await resolve(SCRIPTED_PROVIDER, project_id="p") is None


# --- through a real Temporal worker ---------------------------------------------------------


@workflow.defn(name="LlmCallProbe")
class LlmCallProbe:
    """One LLM activity with a long backoff, so a quick retry can only be the provider's."""

    @workflow.run
    async def run(self, request: LlmRequest) -> LlmResponse:
        return await workflow.execute_activity(
            "baton.llm.complete",
            request,
            result_type=LlmResponse,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=30), maximum_attempts=3),
        )


async def run_probe(
    env: WorkflowEnvironment, server: FakeOpenAI, request: LlmRequest
) -> LlmResponse:
    settings = Settings(openai_api_key=KEY, openai_base_url=server.base_url)
    task_queue = f"llm-probe-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[LlmCallProbe],
        activities=[LlmActivities(settings_provider_configs(settings)).complete],
        # The probe lives in this test module, which imports servers the sandbox cannot load.
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        return await env.client.execute_workflow(
            LlmCallProbe.run,
            request,
            id=f"llm-probe-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )


async def test_temporal_retries_a_429_after_the_providers_retry_after(
    temporal_env: WorkflowEnvironment, openai: FakeOpenAI
):
    openai.reply_error(429, "Rate limit reached", headers={"Retry-After": "1"})
    openai.reply_text("Second time lucky.")

    started = time.monotonic()
    response = await run_probe(temporal_env, openai, ask("openai:gpt-test"))

    assert response.content == "Second time lucky."
    assert len(openai.requests) == 2
    # The policy's 30 s backoff gave way to the provider's 1 s.
    assert time.monotonic() - started < 15


async def test_temporal_fails_a_400_at_once_without_the_key(
    temporal_env: WorkflowEnvironment, openai: FakeOpenAI
):
    openai.reply_error(400, f"Bad request from {KEY_PLACEHOLDER}")

    with pytest.raises(WorkflowFailureError) as raised:
        await run_probe(temporal_env, openai, ask("openai:gpt-test"))

    activity_error = raised.value.cause
    assert isinstance(activity_error, ActivityError)
    failure = activity_error.cause
    assert isinstance(failure, ApplicationError)
    assert failure.type == "provider_error" and failure.non_retryable
    assert failure.message.startswith("openai answered HTTP 400")
    assert KEY not in failure.message and failure.cause is None
    assert len(openai.requests) == 1
