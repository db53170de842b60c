"""HTTP steps reach the public internet and nothing else: loopback, private networks and the
cloud metadata service are refused before any connection is made, redirects are re-checked,
and slow or huge responses fail clearly. Only a local server on 127.0.0.1 receives traffic;
names like `allowed.test` resolve through a fake DNS, since no real DNS exists here."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import httpx
import pytest
from pydantic import ValidationError

from baton.errors import InvalidInput
from baton.integrations import http
from baton.integrations.http import (
    BlockedDestination,
    EgressPolicy,
    HttpStepError,
    egress_client,
    fetch,
)
from baton.settings import Settings

LOOPBACK = EgressPolicy(allow_networks=(ip_network("127.0.0.0/8"),))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    """A minimal HTTP/1.1 server: enough to answer httpx, and to count what arrived."""

    port: int = 0
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)

    def base(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *lines = head.decode("latin-1").strip().split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Seen(method, target, headers, body))
                if not await self.respond(writer, method, target, headers, body):
                    return
        finally:
            writer.close()

    async def respond(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        """Writes one response; False when the connection must close after it."""
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        extra: dict[str, str] = {}
        status, payload = 200, b""
        if url.path == "/hello":
            extra["content-type"] = "text/plain; charset=utf-8"
            payload = "héllo".encode()
        elif url.path == "/latin1":
            extra["content-type"] = "text/plain; charset=iso-8859-1"
            payload = "héllo".encode("latin-1")
        elif url.path == "/echo":
            extra["content-type"] = "application/json"
            echoed = {"method": method, "headers": headers, "body": body.decode()}
            payload = json.dumps(echoed).encode()
        elif url.path == "/redirect":
            status = int(query.get("status", "302"))
            extra["location"] = query["to"]
        elif url.path == "/loop":
            status, extra["location"] = 302, "/loop"
        elif url.path == "/big":
            payload = b"x" * int(query["size"])
        elif url.path == "/gzip":
            extra["content-encoding"] = "gzip"
            payload = gzip.compress(b"\0" * int(query["size"]))
        elif url.path == "/unsized":
            # No Content-Length: the body ends when the connection closes.
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
            writer.write(b"y" * int(query["size"]))
            await writer.drain()
            return False
        elif url.path == "/slow":
            await asyncio.sleep(float(query.get("seconds", "30")))
        else:
            status = 404
        head = [f"HTTP/1.1 {status} X", f"content-length: {len(payload)}"]
        head += [f"{name}: {value}" for name, value in extra.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        return True


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[LocalServer]:
    local = LocalServer()
    listening = await asyncio.start_server(local.handle, "127.0.0.1", 0)
    local.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield local


@pytest.fixture
def local(server: LocalServer) -> LocalServer:
    server.requests.clear()
    server.connections = 0
    return server


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names in the returned dict resolve to their addresses; any other host resolves for
    real (numeric hosts, localhost). Every lookup is recorded under the key `lookups`."""
    table: dict[str, list[str]] = {"lookups": []}
    real_resolve = http._resolve

    async def resolve(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        table["lookups"].append(host)
        if host in table:
            return [ip_address(a) for a in table[host]]
        return await real_resolve(host, port)

    monkeypatch.setattr(http, "_resolve", resolve)
    return table


@pytest.fixture
def connect_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any socket the client tries to open, and refuses it."""
    attempts: list[str] = []

    async def connect_tcp(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        attempts.append(f"{host}:{port}")
        raise httpcore.ConnectError("connections are forbidden in this test")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return attempts


async def refusal(
    call: Callable[[], Awaitable[Any]], error: type[Exception] = BlockedDestination
) -> Exception:
    with pytest.raises(error) as caught:
        await call()
    return caught.value


# --- Loopback, private and special addresses -----------------------------------------------


async def test_a_server_on_loopback_is_refused_by_default(local: LocalServer):
    blocked = await refusal(lambda: fetch("GET", f"{local.base()}/hello", policy=EgressPolicy()))
    assert blocked.message == (
        f"127.0.0.1 is a loopback address; add 127.0.0.1:{local.port} to BATON_HTTP_ALLOW_HOSTS "
        "or the network to BATON_HTTP_ALLOW_NETWORKS to allow it"
    )
    assert blocked.code == "blocked_destination" and blocked.status_code == 422
    assert local.connections == 0


async def test_loopback_is_reachable_once_its_network_is_allowed(local: LocalServer):
    result = await fetch("GET", f"{local.base()}/hello", policy=LOOPBACK)
    assert result.status == 200
    assert result.text() == "héllo"
    assert result.headers["content-type"] == "text/plain; charset=utf-8"
    assert result.url == f"{local.base()}/hello"


@pytest.mark.xdist_group("timing")  # bounds how long it takes
async def test_elapsed_ms_is_how_long_the_server_took_to_answer(local: LocalServer):
    started = time.monotonic()
    result = await fetch("GET", f"{local.base()}/slow?seconds=0.3", policy=LOOPBACK)
    waited_ms = (time.monotonic() - started) * 1000
    assert result.status == 200
    assert 300 <= result.elapsed_ms <= waited_ms


async def test_a_host_and_port_named_in_allow_hosts_is_reachable_whatever_it_resolves_to(
    local: LocalServer,
):
    policy = EgressPolicy(allow_hosts=frozenset({f"localhost:{local.port}"}))
    result = await fetch("GET", f"{local.base('localhost')}/hello", policy=policy)
    assert result.status == 200
    assert local.requests[0].headers["host"] == f"localhost:{local.port}"


async def test_a_bare_host_in_allow_hosts_opens_ports_80_and_443_only(
    local: LocalServer, fake_dns: dict[str, list[str]], connect_attempts: list[str]
):
    # Allowing `localhost` for one internal web API must not open the Temporal UI's HTTP API
    # (or anything else listening on it) to every tenant's http steps.
    policy = EgressPolicy(allow_hosts=frozenset({"localhost"}))
    blocked = await refusal(lambda: fetch("GET", f"{local.base('localhost')}/", policy=policy))
    assert blocked.message.startswith("localhost resolves to ")
    assert f"add localhost:{local.port} to BATON_HTTP_ALLOW_HOSTS" in blocked.message
    temporal_ui = await refusal(lambda: fetch("GET", "http://localhost:8233/", policy=policy))
    assert "add localhost:8233 to BATON_HTTP_ALLOW_HOSTS" in temporal_ui.message
    other_port = EgressPolicy(allow_hosts=frozenset({"localhost:8080"}))
    await refusal(lambda: fetch("GET", f"{local.base('localhost')}/", policy=other_port))
    assert connect_attempts == []
    # Ports 80 and 443 of the bare host are allowed, whatever it resolves to.
    fake_dns["api.internal.test"] = ["10.1.2.3"]
    bare = EgressPolicy(allow_hosts=frozenset({"api.internal.test"}))
    for url in (
        "http://api.internal.test/",
        "https://api.internal.test/",
        "http://api.internal.test:443/",
    ):
        with pytest.raises(HttpStepError):
            await fetch("GET", url, policy=bare)
    assert connect_attempts == ["10.1.2.3:80", "10.1.2.3:443", "10.1.2.3:443"]


@pytest.mark.xdist_group("timing")  # bounds how long it takes
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://172.16.5.4/", "172.16.5.4 is a private address"),
        ("https://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata service's address"),
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("http://100.64.0.1/", "a carrier-grade NAT address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://[fc00::1]/", "fc00::1 is a private address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address (127.0.0.1) inside an IPv6 address"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("http://0x7f.1/", "0x7f.1 resolves to 127.0.0.1, a loopback address"),
        ("http://127.1/", "127.1 resolves to 127.0.0.1, a loopback address"),
    ],
)
async def test_non_public_addresses_are_refused_before_any_connection_is_made(
    url: str, reason: str, connect_attempts: list[str]
):
    started = time.monotonic()
    blocked = await refusal(lambda: fetch("GET", url, policy=EgressPolicy(), timeout=2))
    assert reason in blocked.message
    assert "BATON_HTTP_ALLOW" in blocked.message
    assert connect_attempts == []
    assert time.monotonic() - started < 1


async def test_an_allowed_address_is_dialled_so_the_refusals_above_came_before_dialling(
    connect_attempts: list[str],
):
    error = await refusal(
        lambda: fetch("GET", "http://127.0.0.1:9/", policy=LOOPBACK), HttpStepError
    )
    assert connect_attempts == ["127.0.0.1:9"]
    assert isinstance(error, HttpStepError) and error.retryable


async def test_a_public_looking_name_that_resolves_to_a_private_address_is_refused(
    fake_dns: dict[str, list[str]], connect_attempts: list[str]
):
    fake_dns["intranet.test"] = ["10.1.2.3"]
    blocked = await refusal(lambda: fetch("GET", "https://intranet.test/", policy=EgressPolicy()))
    assert blocked.message == (
        "intranet.test resolves to 10.1.2.3, a private address; add intranet.test to "
        "BATON_HTTP_ALLOW_HOSTS or the network to BATON_HTTP_ALLOW_NETWORKS to allow it"
    )
    assert connect_attempts == []


async def test_every_address_a_name_resolves_to_must_be_public(
    fake_dns: dict[str, list[str]], connect_attempts: list[str]
):
    fake_dns["mixed.test"] = ["93.184.215.14", "127.0.0.1"]
    blocked = await refusal(lambda: fetch("GET", "http://mixed.test/", policy=EgressPolicy()))
    assert "resolves to 127.0.0.1, a loopback address" in blocked.message
    assert connect_attempts == []


async def test_the_checked_address_is_the_one_connected_to_so_rebinding_cannot_slip_in(
    local: LocalServer, fake_dns: dict[str, list[str]]
):
    # A rebinding DNS answers "safe" to the check and "internal" to the connect; here the
    # name is looked up exactly once per connection, and that answer is what gets dialled.
    fake_dns["rebind.test"] = ["127.0.0.1"]
    result = await fetch("GET", f"{local.base('rebind.test')}/hello", policy=LOOPBACK)
    assert result.status == 200
    assert fake_dns["lookups"] == ["rebind.test"]
    assert local.requests[0].headers["host"] == f"rebind.test:{local.port}"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/file", "file:///etc/passwd", "gopher://example.com/"]
)
async def test_only_http_and_https_urls_are_fetched(url: str, connect_attempts: list[str]):
    blocked = await refusal(lambda: fetch("GET", url, policy=EgressPolicy()))
    assert "only http and https are allowed" in blocked.message
    assert connect_attempts == []


# --- Redirects -----------------------------------------------------------------------------


async def test_redirects_are_followed_and_the_final_url_reported(local: LocalServer):
    result = await fetch("GET", f"{local.base()}/redirect?to=/hello", policy=LOOPBACK)
    assert result.status == 200 and result.text() == "héllo"
    assert result.url == f"{local.base()}/hello"
    assert local.paths() == ["/redirect?to=/hello", "/hello"]


async def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(
    local: LocalServer, fake_dns: dict[str, list[str]]
):
    fake_dns["allowed.test"] = ["127.0.0.1"]
    policy = EgressPolicy(allow_hosts=frozenset({f"allowed.test:{local.port}"}))
    target = f"{local.base()}/echo"
    blocked = await refusal(
        lambda: fetch("GET", f"{local.base('allowed.test')}/redirect?to={target}", policy=policy)
    )
    assert "127.0.0.1 is a loopback address" in blocked.message
    assert local.paths() == [f"/redirect?to={target}"]


async def test_a_redirect_to_another_scheme_is_refused(local: LocalServer):
    blocked = await refusal(
        lambda: fetch("GET", f"{local.base()}/redirect?to=file:///etc/passwd", policy=LOOPBACK)
    )
    assert "the redirect from 127.0.0.1 uses the file scheme" in blocked.message


@pytest.mark.parametrize(("status", "method"), [(301, "GET"), (302, "GET"), (303, "GET")])
async def test_a_post_redirected_with_301_302_or_303_becomes_a_get_without_body(
    local: LocalServer, status: int, method: str
):
    result = await fetch(
        "POST",
        f"{local.base()}/redirect?status={status}&to=/echo",
        policy=LOOPBACK,
        json={"a": 1},
    )
    echoed = result.json()
    assert echoed["method"] == method and echoed["body"] == ""
    assert "content-type" not in echoed["headers"]


@pytest.mark.parametrize("status", [307, 308])
async def test_a_post_redirected_with_307_or_308_stays_a_post_with_its_body(
    local: LocalServer, status: int
):
    result = await fetch(
        "POST",
        f"{local.base()}/redirect?status={status}&to=/echo",
        policy=LOOPBACK,
        content="payload",
    )
    assert result.json()["method"] == "POST"
    assert result.json()["body"] == "payload"


async def test_credentials_are_not_forwarded_to_another_origin(
    local: LocalServer, fake_dns: dict[str, list[str]]
):
    fake_dns["other.test"] = ["127.0.0.1"]
    secrets = {"Authorization": "Bearer s3cr3t", "X-Api-Key": "k3y", "Accept": "text/plain"}
    elsewhere = f"{local.base('other.test')}/echo"
    result = await fetch(
        "GET", f"{local.base()}/redirect?to={elsewhere}", policy=LOOPBACK, headers=secrets
    )
    seen = result.json()["headers"]
    assert "authorization" not in seen and "x-api-key" not in seen
    assert seen["accept"] == "text/plain"
    assert seen["host"] == f"other.test:{local.port}"


async def test_credentials_stay_on_a_redirect_within_the_same_origin(local: LocalServer):
    result = await fetch(
        "GET",
        f"{local.base()}/redirect?to=/echo",
        policy=LOOPBACK,
        headers={"Authorization": "Bearer s3cr3t"},
    )
    assert result.json()["headers"]["authorization"] == "Bearer s3cr3t"


async def test_a_redirect_loop_stops_at_max_redirects(local: LocalServer):
    error = await refusal(
        lambda: fetch("GET", f"{local.base()}/loop", policy=LOOPBACK, max_redirects=3),
        HttpStepError,
    )
    assert isinstance(error, HttpStepError) and not error.retryable
    assert "more than 3 redirects" in error.message
    assert local.paths() == ["/loop"] * 4


# --- Limits and failures -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/big?size=20000", "/unsized?size=20000", "/gzip?size=200000"])
async def test_a_response_larger_than_the_cap_fails_without_retry(local: LocalServer, path: str):
    # /big declares its length, /unsized does not, /gzip is small until decompressed.
    error = await refusal(
        lambda: fetch("GET", local.base() + path, policy=LOOPBACK, max_response_bytes=10_000),
        HttpStepError,
    )
    assert isinstance(error, HttpStepError) and not error.retryable
    assert "larger than 10000 bytes" in error.message


async def test_a_response_within_the_cap_arrives_whole_and_decompressed(local: LocalServer):
    result = await fetch("GET", f"{local.base()}/gzip?size=5000", policy=LOOPBACK)
    assert result.body == b"\0" * 5000


@pytest.mark.xdist_group("timing")  # bounds how long it takes
async def test_a_server_that_does_not_answer_in_time_gives_a_retryable_error(
    local: LocalServer,
):
    started = time.monotonic()
    error = await refusal(
        lambda: fetch("GET", f"{local.base()}/slow", policy=LOOPBACK, timeout=0.5),
        HttpStepError,
    )
    assert isinstance(error, HttpStepError) and error.retryable
    assert "within 0.5s" in error.message
    assert time.monotonic() - started < 2


async def test_a_refused_connection_gives_a_retryable_error():
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    error = await refusal(
        lambda: fetch("GET", f"http://127.0.0.1:{port}/", policy=LOOPBACK), HttpStepError
    )
    assert isinstance(error, HttpStepError) and error.retryable
    assert error.code == "http_error"


async def test_a_name_that_does_not_resolve_gives_a_retryable_error():
    error = await refusal(
        lambda: fetch("GET", "http://no-such-host.invalid/", policy=EgressPolicy()),
        HttpStepError,
    )
    assert isinstance(error, HttpStepError) and error.retryable
    assert "no-such-host.invalid" in error.message


# --- Requests and results ------------------------------------------------------------------


async def test_query_parameters_headers_and_a_json_body_are_sent(local: LocalServer):
    result = await fetch(
        "post",
        f"{local.base()}/echo",
        policy=LOOPBACK,
        params={"q": "a b"},
        headers={"X-Trace": "1"},
        json={"name": "Ada"},
    )
    echoed = result.json()
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"name": "Ada"}
    assert echoed["headers"]["x-trace"] == "1"
    assert local.paths() == ["/echo?q=a+b"]


async def test_query_parameters_are_added_to_the_query_already_in_the_url(local: LocalServer):
    await fetch("GET", f"{local.base()}/echo?page=2", policy=LOOPBACK, params={"size": "10"})
    await fetch("GET", f"{local.base()}/echo?page=3", policy=LOOPBACK, params={})
    assert local.paths() == ["/echo?page=2&size=10", "/echo?page=3"]


async def test_json_and_content_together_are_refused():
    with pytest.raises(InvalidInput, match="either json or content"):
        await fetch("POST", "http://example.com/", policy=EgressPolicy(), json={}, content="x")


async def test_text_is_decoded_with_the_charset_the_server_names(local: LocalServer):
    result = await fetch("GET", f"{local.base()}/latin1", policy=LOOPBACK)
    assert result.body == "héllo".encode("latin-1")
    assert result.text() == "héllo"


async def test_header_values_and_query_strings_are_never_logged(
    local: LocalServer, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.DEBUG):
        await fetch(
            "GET",
            f"{local.base()}/redirect?to=/echo%3Fkey%3Ds3cr3t",
            policy=LOOPBACK,
            headers={"Authorization": "Bearer s3cr3t"},
        )
    # httpx and httpcore log full URLs and response headers themselves; the worker's logging
    # setup keeps them at WARNING. This checks what Baton logs.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("baton"))
    assert "127.0.0.1" in ours
    assert "s3cr3t" not in ours


# --- Shared clients and settings -----------------------------------------------------------


async def test_a_shared_egress_client_reuses_its_connection_and_keeps_no_cookies(
    local: LocalServer,
):
    client = egress_client(LOOPBACK)
    try:
        for _ in range(3):
            result = await fetch("GET", f"{local.base()}/echo", policy=LOOPBACK, client=client)
            assert "cookie" not in result.json()["headers"]
        assert local.connections == 1
        assert len(client.cookies.jar) == 0
    finally:
        await client.aclose()


async def test_a_client_not_made_for_the_policy_is_refused():
    async with httpx.AsyncClient() as plain:
        with pytest.raises(ValueError, match="egress_client"):
            await fetch("GET", "http://example.com/", policy=EgressPolicy(), client=plain)
    other = egress_client(LOOPBACK)
    try:
        with pytest.raises(ValueError, match="same policy"):
            await fetch("GET", "http://example.com/", policy=EgressPolicy(), client=other)
    finally:
        await other.aclose()


def test_the_policy_comes_from_settings():
    settings = Settings(
        http_allow_hosts=["API.Internal.Example.", "llm.internal:8080", "[FD00::5]:8000"],
        http_allow_networks=["10.1.0.0/16", "fd00::/8"],
    )
    policy = EgressPolicy.from_settings(settings)
    assert policy.allows_host("api.internal.example", 443)
    assert policy.allows_host("api.internal.example", 80)
    assert not policy.allows_host("api.internal.example", 8233)
    assert policy.allows_host("LLM.internal", 8080)
    assert not policy.allows_host("llm.internal", 443)
    assert policy.allows_host("fd00::5", 8000)
    assert policy.allows_address(ip_address("10.1.2.3"))
    assert policy.allows_address(ip_address("::ffff:10.1.2.3"))
    assert not policy.allows_address(ip_address("10.2.0.1"))


def test_allow_lists_come_from_json_environment_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_HTTP_ALLOW_HOSTS", '["api.internal.example"]')
    monkeypatch.setenv("BATON_HTTP_ALLOW_NETWORKS", '["10.1.0.0/16"]')
    settings = Settings()
    assert settings.http_allow_hosts == ["api.internal.example"]
    assert settings.http_allow_networks == ["10.1.0.0/16"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("http://llm.internal", "is not a host or host:port"),
        ("llm.internal/v1", "is not a host or host:port"),
        ("llm.internal:", "is not a host or host:port"),
        ("", "is not a host or host:port"),
        ("user@llm.internal", "is not a host or host:port"),
        ("[fd00::5", "is not a host or host:port"),
        ("llm.internal:http", "has no port between 1 and 65535"),
        ("llm.internal:70000", "has no port between 1 and 65535"),
    ],
)
def test_a_bad_allow_hosts_entry_in_the_settings_is_a_clear_error(entry: str, problem: str):
    with pytest.raises(ValidationError, match=f"BATON_HTTP_ALLOW_HOSTS: .*{problem}"):
        Settings(http_allow_hosts=[entry])


def test_a_bad_cidr_in_the_settings_is_a_clear_error():
    with pytest.raises(
        ValidationError, match=r"'10\.0\.0\.0/33' is not a network in CIDR notation"
    ):
        Settings(http_allow_networks=["10.0.0.0/33"])
