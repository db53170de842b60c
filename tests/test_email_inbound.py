"""An agent's (or a workforce's) email inbox: a secret URL a mail relay posts raw messages to.
A message starts a task told its sender, subject, text and attachments (by name and size); the
same Message-ID again starts nothing and answers 200 with the task it went to; a reply
(In-Reply-To or References naming a message the inbox took) is posted to that task as a
follow-up. Bad bodies are 4xx JSON errors naming what is wrong; another tenant sees none of
an inbox. Tasks run on the scripted model, which echoes what it is told."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.worker import Worker

from baton.db.tables import InboundEmail
from baton.domain.models import SCRIPTED_LABEL
from baton.settings import Settings
from tests.support import Tenant, assert_error
from tests.support.factories import task_in
from tests.test_first_task import create_agent

RFC822 = {"Content-Type": "message/rfc822"}
MAX_BODY_BYTES = 256 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A smaller body limit than the default, so the test of a message over it sends less."""
    return settings.model_copy(update={"max_body_bytes": MAX_BODY_BYTES})


async def create_inbox(
    api: httpx.AsyncClient, tenant: Tenant, owner: str = "agents", owner_id: str = ""
) -> dict[str, Any]:
    response = await api.post(tenant.url(f"/{owner}/{owner_id}/email"), headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def mail(
    *,
    message_id: str | None,
    subject: str = "Printer on fire",
    text: str = "It is smoking.",
    sender: str | None = "Ada <ada@example.com>",
    in_reply_to: str | None = None,
    references: str | None = None,
    attachment: bytes | None = None,
) -> bytes:
    message = EmailMessage()
    if sender is not None:
        message["From"] = sender
    message["To"] = "help@example.com"
    message["Subject"] = subject
    if message_id is not None:
        message["Message-ID"] = message_id
    if in_reply_to is not None:
        message["In-Reply-To"] = in_reply_to
    if references is not None:
        message["References"] = references
    message.set_content(text)
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename="photo.pdf"
        )
    return message.as_bytes()


async def deliver(api: httpx.AsyncClient, inbox: dict[str, Any], raw: bytes) -> httpx.Response:
    """The relay has the URL and nothing else."""
    return await api.post(urlsplit(inbox["url"]).path, content=raw, headers=RFC822)


async def test_a_message_starts_a_task_told_its_sender_subject_text_and_attachments(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await create_agent(api, tenant)
    inbox = await create_inbox(api, tenant, "agents", agent["id"])
    assert inbox["url"].split("/api/hooks/email/")[1].startswith("btml_")

    raw = mail(message_id="<first@example.com>", attachment=b"%PDF-1.4 not read" * 10)
    answer = await deliver(api, inbox, raw)

    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["outcome"] == "started"
    task = await task_in(api, tenant, accepted["task_id"])
    assert task["status"] == "completed"
    told = task["messages"][0]["content"]
    assert told.startswith("Email from Ada <ada@example.com>\nSubject: Printer on fire\n\n")
    assert "It is smoking." in told
    assert "photo.pdf (application/pdf, 170 bytes)" in told
    assert "not read" not in told
    assert task["messages"][-1]["content"].startswith(f"{SCRIPTED_LABEL} You said: Email from")


async def test_the_same_message_id_twice_starts_one_task_and_answers_200(
    api: httpx.AsyncClient,
    tenant: Tenant,
    session_factory: async_sessionmaker[AsyncSession],
):
    agent = await create_agent(api, tenant)
    inbox = await create_inbox(api, tenant, "agents", agent["id"])
    raw = mail(message_id="<twice@example.com>")

    first, again = await deliver(api, inbox, raw), await deliver(api, inbox, raw)

    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json()["outcome"] == "duplicate"
    assert again.json()["task_id"] == first.json()["task_id"]
    listed = await api.get(tenant.url(f"/tasks?agent_id={agent['id']}"), headers=tenant.headers)
    assert [t["id"] for t in listed.json()["items"]] == [first.json()["task_id"]]
    async with session_factory() as session:
        rows = await session.scalar(
            select(func.count()).where(InboundEmail.inbox_id == inbox["id"])
        )
    assert rows == 1

    # Copies delivered at once (as to several API replicas) still start one task each.
    for attempt in range(8):
        raw = mail(message_id=f"<racing-{attempt}@example.com>")
        answers = await asyncio.gather(*(deliver(api, inbox, raw) for _ in range(4)))
        assert sorted(a.status_code for a in answers) == [200, 200, 200, 202], [
            a.text for a in answers
        ]
        assert len({a.json()["task_id"] for a in answers}) == 1


async def test_a_reply_is_posted_to_the_task_of_the_message_it_answers(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker
):
    agent = await create_agent(api, tenant, idle_timeout_seconds=120)
    inbox = await create_inbox(api, tenant, "agents", agent["id"])
    first = (await deliver(api, inbox, mail(message_id="<question@example.com>"))).json()
    await task_in(api, tenant, first["task_id"], {"idle"})

    reply = mail(
        message_id="<reply@example.com>",
        subject="Re: Printer on fire",
        text="It stopped.",
        in_reply_to="<question@example.com>",
        references="<question@example.com>",
    )
    threaded = await deliver(api, inbox, reply)
    assert threaded.status_code == 202, threaded.text
    assert threaded.json() | {"status": None} == {
        "task_id": first["task_id"],
        "workflow_id": first["workflow_id"],
        "status": None,
        "outcome": "threaded",
    }
    assert (await deliver(api, inbox, reply)).json()["outcome"] == "duplicate"

    # A reply to the reply names only the thread's start in References, as clients do.
    later = mail(message_id="<later@example.com>", references="<unknown@x> <reply@example.com>")
    assert (await deliver(api, inbox, later)).json()["task_id"] == first["task_id"]

    async with asyncio.timeout(30):
        while True:
            task = (
                await api.get(tenant.url(f"/tasks/{first['task_id']}"), headers=tenant.headers)
            ).json()
            answers = [m for m in task["messages"] if m["role"] == "assistant"]
            if len(answers) == 3 and task["status"] == "idle":
                break
            await asyncio.sleep(0.1)
    users = [m["content"] for m in task["messages"] if m["role"] == "user"]
    assert len(users) == 3
    assert users[1].startswith("Email from Ada <ada@example.com>\nSubject: Re: Printer on fire")
    assert "It stopped." in users[1]
    listed = await api.get(tenant.url(f"/tasks?agent_id={agent['id']}"), headers=tenant.headers)
    assert len(listed.json()["items"]) == 1
    await api.post(tenant.url(f"/tasks/{first['task_id']}/cancel"), headers=tenant.headers)


async def test_a_reply_to_a_message_no_inbox_took_starts_a_task_of_its_own(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await create_agent(api, tenant)
    inbox = await create_inbox(api, tenant, "agents", agent["id"])
    raw = mail(message_id="<stray@example.com>", in_reply_to="<never-seen@example.com>")
    answer = await deliver(api, inbox, raw)
    assert answer.status_code == 202 and answer.json()["outcome"] == "started"


async def test_bad_bodies_are_4xx_json_errors_naming_what_is_wrong(
    api: httpx.AsyncClient, tenant: Tenant
):
    agent = await create_agent(api, tenant)
    inbox = await create_inbox(api, tenant, "agents", agent["id"])
    path = urlsplit(inbox["url"]).path

    as_json = await api.post(path, json={"from": "ada@example.com"})
    assert (
        "message/rfc822" in assert_error(as_json, 415, "unsupported_media_type")["error"]["message"]
    )
    no_from = await deliver(api, inbox, mail(message_id="<nofrom@x>", sender=None))
    assert "no From header" in assert_error(no_from, 422, "invalid_input")["error"]["message"]
    not_mail = await deliver(api, inbox, b"just some words, no headers")
    assert "not an RFC 822 message" in assert_error(not_mail, 422)["error"]["message"]
    huge = mail(message_id="<huge@x>", text="x" * (MAX_BODY_BYTES + 10))
    assert_error(await deliver(api, inbox, huge), 413, "payload_too_large")
    listed = await api.get(tenant.url(f"/tasks?agent_id={agent['id']}"), headers=tenant.headers)
    assert listed.json()["items"] == []


async def test_a_deleted_inbox_takes_no_more_mail_and_another_tenant_cannot_see_or_delete_it(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
):
    agent = await create_agent(api, tenant)
    inbox = await create_inbox(api, tenant, "agents", agent["id"])
    other_agent = await create_agent(api, other_tenant)

    # Another tenant's token reaches neither the agent nor the inbox.
    for url in (
        other_tenant.url(f"/agents/{agent['id']}/email"),
        tenant.url(f"/agents/{agent['id']}/email"),
    ):
        response = await api.get(url, headers=other_tenant.headers)
        assert_error(response, 404)
    gone = await api.delete(
        other_tenant.url(f"/agents/{other_agent['id']}/email/{inbox['id']}"),
        headers=other_tenant.headers,
    )
    assert_error(gone, 404)

    listed = await api.get(tenant.url(f"/agents/{agent['id']}/email"), headers=tenant.headers)
    assert [i["id"] for i in listed.json()["items"]] == [inbox["id"]]
    assert "url" not in listed.json()["items"][0]
    deleted = await api.delete(
        tenant.url(f"/agents/{agent['id']}/email/{inbox['id']}"), headers=tenant.headers
    )
    assert deleted.status_code == 204
    assert_error(await deliver(api, inbox, mail(message_id="<late@x>")), 404)
    assert_error(await api.post("/api/hooks/email/btml_not-a-token", content=b"x"), 404)


async def test_a_workforce_inbox_starts_a_workforce_task(api: httpx.AsyncClient, tenant: Tenant):
    agent = await create_agent(api, tenant)
    created = await api.post(
        tenant.url("/workforces"),
        json={
            "name": "Desk",
            "nodes": [{"id": "first", "type": "agent", "agent_id": agent["id"]}],
            "edges": [],
            "entry": "first",
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    inbox = await create_inbox(api, tenant, "workforces", created.json()["id"])
    answer = await deliver(api, inbox, mail(message_id="<desk@example.com>"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["workflow_id"].startswith("workforce-task-")
    assert (await deliver(api, inbox, mail(message_id="<desk@example.com>"))).status_code == 200
