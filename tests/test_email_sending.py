"""SMTP integrations and the `email_send` step: an integration's check connects, upgrades with
STARTTLS when asked and logs in, saying which of these failed; a step sends one mail through
it and returns {message_id, accepted}, and a refusal (login, every recipient) fails the step
naming it. The password reaches the server at login and nothing else: not the API's answers,
not the run, not its history.

The servers are aiosmtpd's (tests/fakes/smtp_server.py) on 127.0.0.1, which the operator here
allows by host and port: one open, one requiring a login, one offering STARTTLS with a
certificate made for the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from baton.settings import Settings
from tests.fakes import refused_port
from tests.fakes.smtp_server import REFUSED_DOMAIN, FakeSmtp
from tests.support import Tenant, assert_error, histories_of
from tests.support.factories import finished_run

# The server requiring a login takes it without TLS, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

PASSWORD = "smtp-password-7e8f9a0b"
DOWN = refused_port()


@pytest.fixture(scope="module")
def open_smtp() -> Iterator[FakeSmtp]:
    server = FakeSmtp()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def login_smtp() -> Iterator[FakeSmtp]:
    server = FakeSmtp(login=("bot", PASSWORD))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSmtp]:
    server = FakeSmtp(tls_dir=tmp_path_factory.mktemp("smtp-tls"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    settings: Settings, open_smtp: FakeSmtp, login_smtp: FakeSmtp, tls_smtp: FakeSmtp
) -> Settings:
    ports = (open_smtp.port, login_smtp.port, tls_smtp.port, DOWN)
    return settings.model_copy(update={"http_allow_hosts": [f"127.0.0.1:{port}" for port in ports]})


def smtp_body(server_port: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": server_port,
        "starttls": False,
        "from_address": "bot@example.com",
        **fields,
    }


async def integrate(
    api: httpx.AsyncClient, tenant: Tenant, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    created = await api.post(
        tenant.url("/integrations"), json={"name": name, **body}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    assert PASSWORD not in created.text
    result: dict[str, Any] = created.json()
    return result


async def check(api: httpx.AsyncClient, tenant: Tenant, name: str) -> dict[str, Any]:
    response = await api.post(tenant.url(f"/integrations/{name}/test"), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert PASSWORD not in response.text
    result: dict[str, Any] = response.json()
    return result


async def run_tool(
    api: httpx.AsyncClient, tenant: Tenant, tool_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    started = await api.post(
        tenant.url(f"/tools/{tool_id}/runs"), json={"params": params}, headers=tenant.headers
    )
    assert started.status_code == 201, started.text
    return await finished_run(api, tenant, started.json()["id"])


async def save_tool(api: httpx.AsyncClient, tenant: Tenant, step: dict[str, Any]) -> str:
    saved = await api.post(
        tenant.url("/tools"),
        json={
            "name": "Mails",
            "params": [{"name": "who", "required": False, "default": "ada@example.com"}],
            "steps": [{"name": "mail", "type": "email_send", **step}],
        },
        headers=tenant.headers,
    )
    assert saved.status_code == 201, saved.text
    tool_id: str = saved.json()["id"]
    return tool_id


# The kind and its check


async def test_the_catalog_describes_the_smtp_kind_with_its_password_write_only(
    api: httpx.AsyncClient, tenant: Tenant
):
    response = await api.get("/api/v1/integration-kinds", headers=tenant.headers)
    smtp = next(k for k in response.json()["items"] if k["kind"] == "smtp")
    assert smtp["secret_fields"] == ["api_key"]
    schema = smtp["json_schema"]
    assert schema["properties"]["api_key"]["writeOnly"] is True
    assert set(schema["required"]) == {"name", "kind", "host", "from_address"}


async def test_an_open_server_passes_the_check(
    api: httpx.AsyncClient, tenant: Tenant, open_smtp: FakeSmtp
):
    created = await integrate(api, tenant, "mail", smtp_body(open_smtp.port))
    assert created["has_key"] is False and created["starttls"] is False
    assert await check(api, tenant, "mail") == {
        "ok": True,
        "error": None,
        "models": [],
        "tools": [],
    }


async def test_a_login_is_checked_and_a_refused_one_says_so(
    api: httpx.AsyncClient, tenant: Tenant, login_smtp: FakeSmtp
):
    body = smtp_body(login_smtp.port, username="bot")
    await integrate(api, tenant, "right", {**body, "api_key": PASSWORD})
    await integrate(api, tenant, "wrong", {**body, "api_key": "not-the-password"})
    await integrate(api, tenant, "anonymous", smtp_body(login_smtp.port))

    assert (await check(api, tenant, "right"))["ok"] is True
    refused = await check(api, tenant, "wrong")
    assert refused["ok"] is False
    assert "refused the login of 'bot': 535" in refused["error"]
    assert "not-the-password" not in refused["error"]
    # Without a login the check passes (it sends nothing); a mail would be refused.
    assert (await check(api, tenant, "anonymous"))["ok"] is True
    listed = await api.get(tenant.url("/integrations/right"), headers=tenant.headers)
    assert listed.json()["has_key"] is True and PASSWORD not in listed.text


async def test_starttls_is_used_when_offered_and_its_absence_or_a_bad_certificate_fails(
    api: httpx.AsyncClient,
    tenant: Tenant,
    open_smtp: FakeSmtp,
    tls_smtp: FakeSmtp,
    monkeypatch: pytest.MonkeyPatch,
):
    await integrate(api, tenant, "plain", smtp_body(open_smtp.port, starttls=True))
    unsupported = await check(api, tenant, "plain")
    assert unsupported["ok"] is False
    assert "does not support STARTTLS" in unsupported["error"]

    await integrate(api, tenant, "tls", smtp_body(tls_smtp.port, starttls=True))
    untrusted = await check(api, tenant, "tls")
    assert untrusted["ok"] is False
    assert "STARTTLS with SMTP server 'tls'" in untrusted["error"]
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]

    # The test's certificate authority, trusted as an operator's would be.
    assert tls_smtp.certificate is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_smtp.certificate))
    assert (await check(api, tenant, "tls"))["ok"] is True


async def test_a_server_that_is_down_fails_the_check_saying_the_connection_was_refused(
    api: httpx.AsyncClient, tenant: Tenant
):
    await integrate(api, tenant, "down", smtp_body(DOWN))
    result = await check(api, tenant, "down")
    assert result["ok"] is False
    assert f"could not reach SMTP server 'down' (127.0.0.1:{DOWN})" in result["error"]
    assert "refused" in result["error"].lower()


async def test_a_private_host_is_refused_unless_the_operator_allows_its_port(
    api: httpx.AsyncClient, tenant: Tenant, open_smtp: FakeSmtp
):
    # 127.0.0.1:25 is not in the allow-list (only the test servers' ports are).
    refused = await api.post(
        tenant.url("/integrations"),
        json={"name": "local", **smtp_body(25)},
        headers=tenant.headers,
    )
    error = assert_error(refused, 422, "blocked_destination")["error"]
    assert "add 127.0.0.1:25 to BATON_HTTP_ALLOW_HOSTS" in error["message"]
    assert error["details"][0]["field"] == "host"

    for bad, field in (
        ({"from_address": "not an address"}, "from_address"),
        ({"host": "mail.example.com/smtp"}, "host"),
        ({"url": "http://example.com/"}, "url"),
    ):
        response = await api.post(
            tenant.url("/integrations"),
            json={"name": "bad", **smtp_body(open_smtp.port), **bad},
            headers=tenant.headers,
        )
        assert field in assert_error(response, 422)["error"]["message"]


async def test_moving_an_integration_to_another_host_or_off_starttls_needs_its_password_again(
    api: httpx.AsyncClient, tenant: Tenant, login_smtp: FakeSmtp, open_smtp: FakeSmtp
):
    body = smtp_body(login_smtp.port, username="bot", starttls=True, api_key=PASSWORD)
    await integrate(api, tenant, "moving", body)
    for change in ({"port": open_smtp.port}, {"host": "localhost"}, {"starttls": False}):
        moved = await api.patch(
            tenant.url("/integrations/moving"), json=change, headers=tenant.headers
        )
        assert "api_key" in assert_error(moved, 422)["error"]["message"]
    renamed = await api.patch(
        tenant.url("/integrations/moving"), json={"username": "robot"}, headers=tenant.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["has_key"] is True


# The step


async def test_a_step_sends_a_mail_with_its_templates_rendered(
    api: httpx.AsyncClient,
    tenant: Tenant,
    worker: Worker,
    login_smtp: FakeSmtp,
    temporal_env: WorkflowEnvironment,
):
    await integrate(
        api, tenant, "mail", smtp_body(login_smtp.port, username="bot", api_key=PASSWORD)
    )
    tool_id = await save_tool(
        api,
        tenant,
        {
            "integration": "mail",
            "to": ["{{ params.who }}", "grace@example.com", f"nobody@{REFUSED_DOMAIN}"],
            "subject": "Hello {{ params.who }}",
            "text": "Plain for {{ params.who }}",
            "html": "<p>Rich for {{ params.who }}</p>",
        },
    )
    before = len(login_smtp.received)

    body = await run_tool(api, tenant, tool_id, {"who": "ada@example.com"})

    assert body["status"] == "succeeded", body["error"]
    output = body["output"]
    assert output["accepted"] == ["ada@example.com", "grace@example.com"]
    [received] = login_smtp.received[before:]
    assert received.mail_from == "bot@example.com"
    assert received.rcpt_tos == ["ada@example.com", "grace@example.com"]
    message = received.message
    assert message["Message-ID"] == output["message_id"]
    assert output["message_id"].endswith("@example.com>")
    assert message["Subject"] == "Hello ada@example.com"
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().strip() == "Plain for ada@example.com"
    assert rich.get_content().strip() == "<p>Rich for ada@example.com</p>"
    history = await histories_of(temporal_env, [body["workflow_id"]])
    assert PASSWORD not in history and PASSWORD not in str(body)


async def test_a_refused_login_or_recipient_fails_the_step_naming_it(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, login_smtp: FakeSmtp
):
    body = smtp_body(login_smtp.port, username="bot")
    await integrate(api, tenant, "wrong", {**body, "api_key": "not-the-password"})
    await integrate(api, tenant, "right", {**body, "api_key": PASSWORD})
    before = len(login_smtp.received)

    bad_login = await save_tool(
        api,
        tenant,
        {"integration": "wrong", "to": ["ada@example.com"], "subject": "s", "text": "t"},
    )
    failed = await run_tool(api, tenant, bad_login, {})
    assert failed["status"] == "failed"
    assert "refused the login of 'bot': 535" in failed["error"]
    assert "not-the-password" not in str(failed)

    nobody = await save_tool(
        api,
        tenant,
        {"integration": "right", "to": [f"x@{REFUSED_DOMAIN}"], "subject": "s", "text": "t"},
    )
    refused = await run_tool(api, tenant, nobody, {})
    assert refused["status"] == "failed"
    assert f"refused every recipient (x@{REFUSED_DOMAIN}: 550" in refused["error"]

    not_an_address = await save_tool(
        api,
        tenant,
        {"integration": "right", "to": ["{{ params.who }}"], "subject": "s", "text": "t"},
    )
    rendered = await run_tool(api, tenant, not_an_address, {"who": "Ada"})
    assert rendered["status"] == "failed"
    assert "to[0]: 'Ada' is not an email address" in rendered["error"]
    assert len(login_smtp.received) == before


async def test_a_step_must_name_an_smtp_integration_of_its_own_project(
    api: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, open_smtp: FakeSmtp
):
    await integrate(api, tenant, "mail", smtp_body(open_smtp.port))
    step = {"name": "mail", "type": "email_send", "to": ["a@example.com"], "subject": "s"}
    for owner, integration, to, reason, field in (
        (other_tenant, "mail", "a@example.com", "no integration 'mail' in this project", None),
        (tenant, "nope", "a@example.com", "no integration 'nope' in this project", None),
        (tenant, "mail", "not-an-address", "'not-an-address' is not an email address", "to"),
    ):
        refused = await api.post(
            owner.url("/tools"),
            json={
                "name": "t",
                "steps": [{**step, "text": "t", "integration": integration, "to": [to]}],
            },
            headers=owner.headers,
        )
        error = assert_error(refused, 422)["error"]
        assert reason in error["message"], error
        if field is None:
            assert error["details"][0]["field"] == "steps[0].integration"


async def test_an_smtp_integration_a_tool_uses_cannot_be_deleted(
    api: httpx.AsyncClient, tenant: Tenant, open_smtp: FakeSmtp
):
    await integrate(api, tenant, "mail", smtp_body(open_smtp.port))
    await save_tool(
        api, tenant, {"integration": "mail", "to": ["a@example.com"], "subject": "s", "text": "t"}
    )
    refused = await api.delete(tenant.url("/integrations/mail"), headers=tenant.headers)
    assert "tool 'Mails'" in assert_error(refused, 409)["error"]["message"]


async def test_the_send_email_template_clones_and_sends(
    api: httpx.AsyncClient, tenant: Tenant, worker: Worker, open_smtp: FakeSmtp, tmp_path: Path
):
    await integrate(api, tenant, "smtp", smtp_body(open_smtp.port))
    cloned = await api.post(tenant.url("/tool-templates/send-email/clone"), headers=tenant.headers)
    assert cloned.status_code == 201, cloned.text
    before = len(open_smtp.received)
    params = {"to": "ada@example.com", "subject": "From a template", "body": "It works."}
    body = await run_tool(api, tenant, cloned.json()["id"], params)
    assert body["status"] == "succeeded", body["error"]
    [received] = open_smtp.received[before:]
    assert received.message["Subject"] == "From a template"
