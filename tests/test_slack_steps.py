"""The `slack_post` step: a tool posts a message as the bot of the project's Slack
integration, its channel, text and thread rendered like any step's templates; its output is
the message's {channel, ts}. A refusal by Slack fails the step naming Slack's error, without
retries; the bot token reaches Slack as a bearer token and nothing else. A step naming no
Slack integration of the project, or one of another project, is refused when saved.

The Slack Web API is tests/fakes/slack_server.py on 127.0.0.1, which the operator here allows
by host and port."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.settings import Settings
from tests.fakes.slack_server import BOT_TOKEN, SIGNING_SECRET, FakeSlack
from tests.support import Tenant, assert_error, histories_of
from tests.support.factories import finished_run


@pytest.fixture
def settings(settings: Settings, slack: FakeSlack) -> Settings:
    return settings.model_copy(update={"http_allow_hosts": [f"127.0.0.1:{slack.port}"]})


async def integrate(api: httpx.AsyncClient, tenant: Tenant, slack: FakeSlack) -> None:
    slack.reset()
    response = await api.post(
        tenant.url("/integrations"),
        json={
            "name": "team",
            "kind": "slack",
            "base_url": slack.base_url,
            "bot_token": BOT_TOKEN,
            "signing_secret": SIGNING_SECRET,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text


async def save_tool(api: httpx.AsyncClient, tenant: Tenant, step: dict[str, Any]) -> httpx.Response:
    return await api.post(
        tenant.url("/tools"),
        json={
            "name": "Announce",
            "params": [{"name": "channel"}, {"name": "who"}, {"name": "thread", "required": False}],
            "steps": [{"name": "post", "type": "slack_post", **step}],
            "output": "{{ steps.post.output }}",
        },
        headers=tenant.headers,
    )


async def run_tool(
    api: httpx.AsyncClient, tenant: Tenant, step: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    saved = await save_tool(api, tenant, step)
    assert saved.status_code == 201, saved.text
    started = await api.post(
        tenant.url(f"/tools/{saved.json()['id']}/runs"),
        json={"params": params},
        headers=tenant.headers,
    )
    assert started.status_code == 201, started.text
    return await finished_run(api, tenant, started.json()["id"])


STEP = {
    "integration": "team",
    "channel": "{{ params.channel }}",
    "text": "Hello {{ params.who }}!",
    "thread_ts": "{{ params.thread }}",
}


async def test_a_step_posts_its_rendered_text_in_the_channel_and_thread_as_the_bot(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    slack: FakeSlack,
    temporal_env: WorkflowEnvironment,
):
    await integrate(api, tenant, slack)

    body = await run_tool(api, tenant, STEP, {"channel": "C1", "who": "Ada", "thread": "17.5"})

    assert body["status"] == "succeeded", body["error"]
    [post] = slack.posts
    assert (post.channel, post.text, post.thread_ts) == ("C1", "Hello Ada!", "17.5")
    assert body["output"] == {"channel": "C1", "ts": post.ts}
    assert slack.authorizations == [f"Bearer {BOT_TOKEN}"]
    history = await histories_of(temporal_env, [body["workflow_id"]])
    assert BOT_TOKEN not in history and SIGNING_SECRET not in history

    top_level = await run_tool(api, tenant, STEP, {"channel": "C2", "who": "Grace"})
    assert top_level["status"] == "succeeded", top_level["error"]
    assert slack.posts[-1].thread_ts is None


async def test_a_refusal_by_slack_fails_the_step_naming_slacks_error_without_retries(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, slack: FakeSlack
):
    await integrate(api, tenant, slack)
    slack.missing_channels.add("C404")

    body = await run_tool(api, tenant, STEP, {"channel": "C404", "who": "Ada"})

    assert body["status"] == "failed"
    assert "Slack (team) refused chat.postMessage: channel_not_found" in body["error"]
    assert len(slack.authorizations) == 1  # not the three attempts the step's retries allow

    slack.token = "xoxb-revoked"
    revoked = await run_tool(api, tenant, STEP, {"channel": "C1", "who": "Ada"})
    assert revoked["status"] == "failed"
    assert "invalid_auth" in revoked["error"] and BOT_TOKEN not in revoked["error"]


async def test_a_step_naming_no_slack_integration_of_the_project_is_refused_when_saved(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, slack: FakeSlack
):
    await integrate(api, tenant, slack)
    for project in (other_tenant,):
        theirs = await save_tool(api, project, STEP)
        error = assert_error(theirs, 422, "invalid_input")["error"]
        assert "steps[0].integration: no integration 'team' in this project" in error["message"]
    llm = await api.post(
        tenant.url("/integrations"),
        json={"name": "gpt", "kind": "openai", "base_url": "https://api.example.com/v1"},
        headers=tenant.headers,
    )
    assert llm.status_code == 201, llm.text
    wrong_kind = await save_tool(api, tenant, {**STEP, "integration": "gpt"})
    assert "is not a Slack app" in assert_error(wrong_kind, 422)["error"]["message"]
    saved = await save_tool(api, tenant, STEP)
    assert saved.status_code == 201, saved.text
    in_use = await api.delete(tenant.url("/integrations/team"), headers=tenant.headers)
    assert_error(in_use, 409, "conflict")


async def test_a_slack_base_url_the_operator_does_not_allow_is_refused_when_saved(
    api: httpx.AsyncClient, tenant: Tenant
):
    refused = await api.post(
        tenant.url("/integrations"),
        json={
            "name": "internal",
            "kind": "slack",
            "base_url": "http://127.0.0.1:9/api/",
            "bot_token": BOT_TOKEN,
            "signing_secret": SIGNING_SECRET,
        },
        headers=tenant.headers,
    )
    message = assert_error(refused, 422)["error"]["message"]
    assert message.startswith("base_url: 127.0.0.1 is a loopback address")
    assert BOT_TOKEN not in refused.text
