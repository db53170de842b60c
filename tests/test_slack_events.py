"""A Slack events URL: an agent answers in Slack. Slack (played here by the test, signing its
requests as Slack does) sends events to the URL; Baton checks the signature and its age,
answers `url_verification`, acts once on an event however often Slack sends it, starts a task
when its bot is mentioned or sent a direct message, keeps one task per Slack thread (a reply
in the thread is a follow-up message), and posts each answer in the thread through the Slack
Web API (tests/fakes/slack_server.py). Another project can neither see nor use the
integration or its URL."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from temporalio.worker import Worker

from baton.domain.models import SCRIPTED_LABEL
from baton.settings import Settings
from tests.fakes.slack_server import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, Post
from tests.fakes.slack_server import events_request as signed
from tests.support import Tenant, assert_error
from tests.test_first_task import create_agent
from tests.test_workforce_tasks import echo_workforce

CHANNEL = "C0GENERAL"


@pytest.fixture
def settings(settings: Settings, slack: FakeSlack) -> Settings:
    return settings.model_copy(update={"http_allow_hosts": [f"127.0.0.1:{slack.port}"]})


async def slack_agent(
    api: httpx.AsyncClient, tenant: Tenant, slack: FakeSlack
) -> tuple[dict[str, Any], str]:
    """An echo agent with a Slack events URL (its path, as Slack is given it)."""
    slack.reset()
    integration = await api.post(
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
    assert integration.status_code == 201, integration.text
    # It waits for follow-ups after answering, as a conversation in a thread needs.
    agent = await create_agent(api, tenant, idle_timeout_seconds=300)
    created = await api.post(
        tenant.url(f"/agents/{agent['id']}/slack"),
        json={"integration": "team"},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    url = created.json()["url"]
    assert urlsplit(url).path.startswith("/api/hooks/slack/btsl_")
    return agent, urlsplit(url).path


def callback(event_id: str, **event: Any) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T0BATON",
        "event_id": event_id,
        "event": {"channel": CHANNEL, **event},
        "authorizations": [{"user_id": BOT_USER, "is_bot": True}],
    }


def mention(event_id: str, text: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    extra = {"thread_ts": thread_ts} if thread_ts else {}
    return callback(
        event_id, type="app_mention", user="U0ADA", text=f"<@{BOT_USER}> {text}", ts=ts, **extra
    )


async def send(
    api: httpx.AsyncClient, path: str, payload: dict[str, Any], **signing: Any
) -> httpx.Response:
    body, headers = signed(payload, **signing)
    return await api.post(path, content=body, headers=headers)


async def answers_in(slack: FakeSlack, thread_ts: str, count: int) -> list[Post]:
    async with asyncio.timeout(30):
        while len(posts := slack.posts_in(CHANNEL, thread_ts)) < count:
            await asyncio.sleep(0.05)
    return posts


async def agent_tasks(api: httpx.AsyncClient, tenant: Tenant, agent_id: str) -> list[Any]:
    response = await api.get(tenant.url(f"/tasks?agent_id={agent_id}"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_slack_verifies_the_url_with_a_signed_challenge_and_nothing_unsigned_gets_in(
    api: httpx.AsyncClient, tenant: Tenant, slack: FakeSlack
):
    _, path = await slack_agent(api, tenant, slack)
    verification = {"type": "url_verification", "token": "legacy", "challenge": "c-123"}

    answered = await send(api, path, verification)
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"challenge": "c-123"}

    forged = await send(api, path, verification, secret="not-the-signing-secret")
    assert "signature does not match" in assert_error(forged, 401)["error"]["message"]
    old = await send(api, path, verification, timestamp=int(time.time()) - 6 * 60)
    assert "more than five minutes ago" in assert_error(old, 401)["error"]["message"]
    unsigned = await api.post(path, json=verification)
    assert_error(unsigned, 401)
    assert_error(await send(api, "/api/hooks/slack/btsl_unknown", verification), 404)


async def test_a_mention_starts_a_task_answered_in_its_thread_and_a_reply_there_follows_up(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, slack: FakeSlack
):
    agent, path = await slack_agent(api, tenant, slack)

    first = await send(api, path, mention("Ev1", "What is Baton?", ts="100.1"))
    assert first.status_code == 200, first.text
    assert first.json() == {"ok": True, "done": "started"}

    [answer] = await answers_in(slack, "100.1", 1)
    assert answer.text.startswith(SCRIPTED_LABEL) and "What is Baton?" in answer.text
    [task] = await agent_tasks(api, tenant, agent["id"])

    # A reply in the thread, not mentioning the bot: the same task's next message.
    reply = callback(
        "Ev2", type="message", user="U0ADA", text="And who runs it?", ts="100.5", thread_ts="100.1"
    )
    followed = await send(api, path, reply)
    assert followed.json() == {"ok": True, "done": "follow-up"}
    second = (await answers_in(slack, "100.1", 2))[1]
    assert "And who runs it?" in second.text and second.thread_ts == "100.1"
    assert [t["id"] for t in await agent_tasks(api, tenant, agent["id"])] == [task["id"]]
    messages = await api.get(tenant.url(f"/tasks/{task['id']}"), headers=tenant.headers)
    assert "And who runs it?" in messages.text

    # The bot's own answers come back as events: they ask nothing.
    own = callback("Ev3", type="message", bot_id="B0BATON", text="x", ts="100.9", thread_ts="100.1")
    assert (await send(api, path, own)).json() == {"ok": True, "done": "ignored"}
    # A new mention elsewhere is a thread, and a task, of its own.
    other = await send(api, path, mention("Ev4", "Another question", ts="200.1"))
    assert other.json()["done"] == "started"
    await answers_in(slack, "200.1", 1)
    assert len(await agent_tasks(api, tenant, agent["id"])) == 2
    assert {p.thread_ts for p in slack.posts} == {"100.1", "200.1"}


async def test_slack_sending_an_event_again_starts_nothing_more(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, slack: FakeSlack
):
    agent, path = await slack_agent(api, tenant, slack)
    direct = callback(
        "EvDM", type="message", channel_type="im", user="U0ADA", text="hello", ts="300.1"
    )
    assert (await send(api, path, direct)).json()["done"] == "started"
    again = await send(api, path, direct, retry=1)
    assert again.status_code == 200, again.text
    assert again.json() == {"ok": True, "done": "duplicate"}

    await answers_in(slack, "300.1", 1)
    assert len(await agent_tasks(api, tenant, agent["id"])) == 1
    assert len(slack.posts_in(CHANNEL, "300.1")) == 1


async def test_another_project_can_neither_see_nor_use_the_slack_integration_or_its_url(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, slack: FakeSlack
):
    agent, _ = await slack_agent(api, tenant, slack)
    theirs = await create_agent(api, other_tenant)
    taken = await api.post(
        other_tenant.url(f"/agents/{theirs['id']}/slack"),
        json={"integration": "team"},
        headers=other_tenant.headers,
    )
    assert "no integration 'team' in this project" in assert_error(taken, 422)["error"]["message"]
    for url in (f"/agents/{agent['id']}/slack", "/integrations/team"):
        assert_error(await api.get(other_tenant.url(url), headers=other_tenant.headers), 404)
    listed = await api.get(tenant.url(f"/agents/{agent['id']}/slack"), headers=tenant.headers)
    [trigger] = listed.json()["items"]
    assert "url" not in trigger
    in_use = await api.delete(tenant.url("/integrations/team"), headers=tenant.headers)
    assert "Slack events URL" in assert_error(in_use, 409)["error"]["message"]
    revoked = await api.delete(
        tenant.url(f"/agents/{agent['id']}/slack/{trigger['id']}"), headers=tenant.headers
    )
    assert revoked.status_code == 204, revoked.text


async def test_a_workforce_answers_a_mention_in_its_thread_too(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, slack: FakeSlack
):
    await slack_agent(api, tenant, slack)  # the integration
    workforce, _ = await echo_workforce(api, tenant, "triage", "reply")
    created = await api.post(
        tenant.url(f"/workforces/{workforce}/slack"),
        json={"integration": "team"},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["workforce_id"] == workforce
    path = urlsplit(created.json()["url"]).path

    started = await send(api, path, mention("EvW", "Where is my order?", ts="400.1"))
    assert started.json() == {"ok": True, "done": "started"}

    [answer] = await answers_in(slack, "400.1", 1)
    assert answer.text.startswith(SCRIPTED_LABEL) and "Where is my order?" in answer.text
