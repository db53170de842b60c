"""Sending mail through a project's SMTP server with aiosmtplib: connect, STARTTLS when the
integration asks for it, log in when it has a username, then send. Each step of the way that
fails says which it was (the connection, STARTTLS, the login, a recipient), so a person
reading a failed check or step knows what to fix.

The connection passes the egress guard like an http step's: the host is resolved once, every
address must pass the operator's policy (BATON_HTTP_ALLOW_HOSTS takes `host:port`), and the
socket goes to exactly an address that was checked. TLS still verifies the certificate
against the host name the integration gives. Errors never hold the password."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from baton.domain.integrations import SmtpServer
from baton.errors import BatonError
from baton.integrations import http

DEFAULT_TIMEOUT_S = 30.0


class SmtpFailure(BatonError):
    """The server could not be reached or refused what was asked; `retryable` says whether
    trying again may help (a connection refused may, a login refused never)."""

    code = "smtp_error"
    status_code = 502

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message, details={"retryable": retryable})
        self.retryable = retryable


@dataclass(frozen=True)
class Mail:
    to: list[str]
    subject: str
    text: str
    html: str | None = None
    # Chosen by the caller, the same on every retry, so a receiver can tell a resend.
    message_id: str | None = None


@dataclass(frozen=True)
class SentMail:
    message_id: str
    accepted: list[str]


async def check(server: SmtpServer, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Connects, upgrades and logs in as sending would, then says goodbye."""
    async with _session(server, timeout):
        pass


async def send(server: SmtpServer, mail: Mail, *, timeout: float = DEFAULT_TIMEOUT_S) -> SentMail:
    """Sends `mail` from the integration's address; the recipients the server refused are
    not in `accepted` (all refused is a failure)."""
    message = _message(server, mail)
    async with _session(server, timeout) as client:
        try:
            refused, _ = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise SmtpFailure(
                f"{server.where} refused every recipient ({reasons})", retryable=False
            ) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise SmtpFailure(
                f"{server.where} refused the sender {server.from_address}: "
                f"{exc.code} {exc.message}",
                retryable=False,
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpFailure(
                f"{server.where} refused the message: {exc.code} {exc.message}",
                retryable=400 <= exc.code < 500,
            ) from None
    return SentMail(
        message_id=str(message["Message-ID"]),
        accepted=[address for address in mail.to if address not in refused],
    )


def _message(server: SmtpServer, mail: Mail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = server.from_address
    message["To"] = ", ".join(mail.to)
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    domain = server.from_address.rpartition("@")[2]
    message["Message-ID"] = mail.message_id or f"<{uuid.uuid4().hex}@{domain}>"
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    return message


@asynccontextmanager
async def _session(server: SmtpServer, timeout: float) -> AsyncIterator[aiosmtplib.SMTP]:
    """A connected client, upgraded and logged in as the integration says; closed after."""
    try:
        async with asyncio.timeout(timeout):
            client = await _connect(server, timeout)
            try:
                await _greet(server, client)
                yield client
            finally:
                with suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
                client.close()
    except TimeoutError:
        raise SmtpFailure(
            f"{server.where} did not answer within {timeout:g}s", retryable=True
        ) from None


async def _connect(server: SmtpServer, timeout: float) -> aiosmtplib.SMTP:
    try:
        addresses = await http.checked_addresses(server.host, server.port, policy=server.egress)
    except http.BlockedDestination as exc:
        raise http.BlockedDestination(f"{server.where} was not called: {exc.message}") from None
    except OSError as exc:
        raise SmtpFailure(f"could not reach {server.where}: {exc}", retryable=True) from None
    failure: Exception | None = None
    for address in addresses:
        client = aiosmtplib.SMTP(
            hostname=str(address), port=server.port, timeout=timeout, start_tls=False
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            failure = exc
            continue
        return client
    raise SmtpFailure(
        f"could not reach {server.where}: {_connection_failure(failure)}", retryable=True
    ) from None


async def _greet(server: SmtpServer, client: aiosmtplib.SMTP) -> None:
    """EHLO, STARTTLS when asked, and the login when there is a username."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPException as exc:
        raise SmtpFailure(f"{server.where} refused EHLO: {_reason(exc)}", retryable=True) from None
    if server.starttls:
        if not client.supports_extension("starttls"):
            raise SmtpFailure(
                f"{server.where} does not support STARTTLS; set starttls to false only if the "
                "connection may go unencrypted",
                retryable=False,
            )
        try:
            await client.starttls(server_hostname=server.host)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpFailure(
                f"STARTTLS with {server.where} failed: {_reason(exc)}", retryable=False
            ) from None
    if server.username is None:
        return
    password = server.password.get_secret_value() if server.password is not None else ""
    try:
        await client.login(server.username, password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise SmtpFailure(
            f"{server.where} refused the login of {server.username!r}: {exc.code} {exc.message}",
            retryable=False,
        ) from None
    except aiosmtplib.SMTPException as exc:
        raise SmtpFailure(
            f"the login to {server.where} failed: {_reason(exc)}", retryable=False
        ) from None


def _connection_failure(exc: BaseException | None) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the server up, and its port right?)"
        cause = cause.__cause__
    return _reason(exc)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "its name resolves to no address"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return str(exc) or type(exc).__name__
