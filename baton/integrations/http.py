"""Outbound HTTP, safe against server-side request forgery (SSRF): a URL a user, a model or a
project admin wrote must not reach the worker's own network. One guard serves http steps,
URL imports (`egress_client`, `fetch`) and LLM and embedding providers' base URLs
(`provider_client` for the SDKs' httpx2, `check_destination` when a base URL is saved), and
SMTP servers (`checked_addresses`, `check_host`).

Every connection, including every redirect hop, goes only to an address that passed the
policy: the host is resolved once with the event loop's getaddrinfo, every address it
resolves to must be public (not loopback, private, link-local and so the cloud metadata
service, unspecified, multicast, reserved, carrier-grade NAT, nor one of those inside an
IPv6 address), and the socket is opened to exactly the addresses that were checked. The
check runs inside the connection pool's network backend, at the moment of connecting, so
DNS rebinding between check and connect is not possible: there is no second lookup. TLS
still uses the URL's host name for SNI and certificate verification. Numeric spellings
such as http://2130706433/ resolve locally (no DNS query) and are checked like any name.
`EgressPolicy` (baton/domain/egress.py) lets an operator allow `host` (ports 80 and 443),
`host:port` and networks.

What remains:
- a host:port in `allow_hosts` is trusted whatever its DNS says, rebinding included;
- a network in `allow_networks` is allowed on every port;
- a public server that proxies or redirects internally on its own side is out of reach of
  any client-side check;
- proxies are never used (no HTTP(S)_PROXY from the environment), since a proxy would
  connect on our behalf to addresses we never saw.

On a redirect to another origin (scheme, host or port) only harmless headers are kept, so
credentials a step sends to one host never reach another; provider clients follow no
redirect at all. Cookies are never stored or sent. This module never logs header values or
query strings: they may carry secrets. httpx and httpx2 log every request's full URL at
INFO and httpcore the response headers at DEBUG, so the process's logging setup
(baton/logs.py) keeps those loggers at WARNING.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from http.cookiejar import CookieJar, DefaultCookiePolicy
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import Any, TypeVar

import httpcore
import httpcore2
import httpx
import httpx2

from baton.domain.egress import BARE_HOST_PORTS, EgressPolicy, IPAddress, embedded_ipv4
from baton.errors import BatonError, InvalidInput

__all__ = [
    "BlockedDestination",
    "EgressPolicy",
    "HttpResult",
    "HttpStepError",
    "check_destination",
    "check_host",
    "checked_addresses",
    "egress_client",
    "fetch",
    "provider_client",
]

logger = logging.getLogger("baton.http")

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Kept when a redirect leaves the origin; anything else may be a credential.
_HEADERS_KEPT_ACROSS_ORIGINS = frozenset(
    {"accept", "accept-encoding", "accept-language", "cache-control", "content-type", "user-agent"}
)
_BODY_HEADERS = ("content-length", "content-type", "transfer-encoding")

_CARRIER_GRADE_NAT = IPv4Network("100.64.0.0/10")
_METADATA_ADDRESSES = frozenset({IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")})


class BlockedDestination(InvalidInput):
    """The URL points somewhere the egress policy forbids; retrying cannot help."""

    code = "blocked_destination"
    status_code = 422


class HttpStepError(BatonError):
    """The request failed on the way: no answer, a broken connection, a response too large."""

    code = "http_error"
    status_code = 502
    retryable: bool

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message, details={"retryable": retryable})
        self.retryable = retryable


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    url: str  # final URL after redirects
    elapsed_ms: int

    def text(self) -> str:
        message = Message()
        message["content-type"] = self.headers.get("content-type", "")
        charset = message.get_content_charset() or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def egress_client(policy: EgressPolicy) -> httpx.AsyncClient:
    """A client whose every connection is checked against `policy` as it is opened. Share one
    to reuse connections, pass it to `fetch` with the same policy, close it when done."""
    client = httpx.AsyncClient(
        transport=_GuardedTransport(policy),
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),  # stores none
    )
    _client_policies[client] = policy
    return client


_client_policies: weakref.WeakKeyDictionary[httpx.AsyncClient, EgressPolicy] = (
    weakref.WeakKeyDictionary()
)


async def fetch(
    method: str,
    url: str,
    *,
    policy: EgressPolicy,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    timeout: float = 30.0,
    max_response_bytes: int = 5_000_000,
    max_redirects: int = 5,
    client: httpx.AsyncClient | None = None,
) -> HttpResult:
    """Sends one request, follows up to `max_redirects` redirects and reads the whole
    response within `timeout` seconds. Any status is a result; failures on the way raise
    BlockedDestination or HttpStepError."""
    if json is not None and content is not None:
        raise InvalidInput("an HTTP request body is either json or content, not both")
    if client is not None and _client_policies.get(client) != policy:
        raise ValueError("fetch() needs a client made by egress_client() with the same policy")
    started = time.monotonic()
    own_client = client is None
    active = egress_client(policy) if client is None else client
    try:
        request = _first_request(active, method, url, headers, params, json, content, timeout)
        async with asyncio.timeout(timeout):
            response, body = await _follow(active, request, max_redirects, max_response_bytes)
    except TimeoutError as exc:
        raise HttpStepError(
            f"no complete response from {_host(url)} within {timeout:g}s", retryable=True
        ) from exc
    finally:
        if own_client:
            await active.aclose()
    return HttpResult(
        status=response.status_code,
        headers=dict(response.headers.items()),
        body=body,
        url=str(response.url),
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )


def _first_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    params: Mapping[str, str] | None,
    json: Any,
    content: bytes | str | None,
    timeout: float,
) -> httpx.Request:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"{url!r} is not a valid URL: {exc}") from exc
    _require_http(parsed, what=f"{url!r}")
    if params:
        # Added to the URL's own query: httpx's `params=` would replace it.
        parsed = parsed.copy_merge_params(dict(params))
    return client.build_request(
        method.upper(),
        parsed,
        headers=dict(headers or {}),
        json=json,
        content=content,
        timeout=timeout,
    )


async def _follow(
    client: httpx.AsyncClient, request: httpx.Request, max_redirects: int, max_bytes: int
) -> tuple[httpx.Response, bytes]:
    for _ in range(max_redirects + 1):
        response = await _send(client, request)
        try:
            if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                request = _redirected(request, response)
                continue
            return response, await _read_capped(response, max_bytes)
        finally:
            await response.aclose()
    raise HttpStepError(
        f"more than {max_redirects} redirects, the last one to {request.url.host}",
        retryable=False,
    )


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    host = request.url.host
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise HttpStepError(f"{host} did not answer in time", retryable=True) from exc
    except httpx.TransportError as exc:
        raise HttpStepError(f"could not reach {host}: {exc}", retryable=True) from exc
    # Scheme, host, port and status only: query strings and headers may hold secrets.
    logger.debug(
        "%s %s://%s:%s -> %s",
        request.method,
        request.url.scheme,
        host,
        request.url.port,
        response.status_code,
    )
    return response


def _redirected(request: httpx.Request, response: httpx.Response) -> httpx.Request:
    try:
        url = request.url.join(response.headers["location"])
    except httpx.InvalidURL as exc:
        raise HttpStepError(
            f"{request.url.host} redirected to an invalid URL: {exc}", retryable=False
        ) from exc
    _require_http(url, what=f"the redirect from {request.url.host}")

    method = request.method
    if (response.status_code == 303 and method != "HEAD") or (
        response.status_code in (301, 302) and method == "POST"
    ):
        method = "GET"  # as browsers do
    headers = httpx.Headers(request.headers)
    headers.pop("host", None)  # recomputed from the new URL
    if not _same_origin(url, request.url):
        for name in list(headers.keys()):
            if name not in _HEADERS_KEPT_ACROSS_ORIGINS:
                del headers[name]
    body: bytes | None = request.content
    if method != request.method:
        body = None
        for name in _BODY_HEADERS:
            headers.pop(name, None)
    return httpx.Request(method, url, headers=headers, content=body, extensions=request.extensions)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    def too_large() -> HttpStepError:
        return HttpStepError(
            f"the response from {response.url.host} is larger than {max_bytes} bytes; "
            "ask for less data or raise the step's response size limit",
            retryable=False,
        )

    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large()
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise too_large()
    except httpx.TimeoutException as exc:
        raise HttpStepError(
            f"{response.url.host} stopped sending its response", retryable=True
        ) from exc
    except httpx.TransportError as exc:
        raise HttpStepError(
            f"the connection to {response.url.host} broke: {exc}", retryable=True
        ) from exc
    except httpx.DecodingError as exc:
        raise HttpStepError(
            f"the response from {response.url.host} could not be decoded: {exc}",
            retryable=False,
        ) from exc
    return bytes(body)


def _require_http(url: httpx.URL, *, what: str) -> None:
    if url.scheme not in ("http", "https"):
        raise BlockedDestination(
            f"{what} uses the {url.scheme or 'missing'} scheme; only http and https are allowed"
        )
    if not url.host:
        raise InvalidInput(f"{what} has no host")


def _same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (other.scheme, other.host, other.port)


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or url
    except httpx.InvalidURL:
        return url


# --- Checked connections -------------------------------------------------------------------


def provider_client(policy: EgressPolicy) -> httpx2.AsyncClient:
    """A client for the OpenAI and Anthropic SDKs (which speak httpx2) whose every connection
    passes `policy` as it is opened, exactly like an http step's. Redirects are not followed:
    a key sent to the address that was checked never travels on to another."""
    return httpx2.AsyncClient(
        transport=_GuardedProviderTransport(policy), trust_env=False, follow_redirects=False
    )


async def check_destination(url: str, *, policy: EgressPolicy, timeout: float = 5.0) -> None:
    """Refuses (BlockedDestination) a URL whose host resolves, now, to an address `policy`
    forbids, so a setting is refused when it is saved and not only when it is used. A name
    that does not resolve (yet) passes: every connection is checked again as it is made."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"{url!r} is not a valid URL: {exc}") from exc
    _require_http(parsed, what=repr(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout):
            await _checked_addresses(parsed.host, port, policy)
    except (_Unresolvable, TimeoutError):
        return


async def checked_addresses(host: str, port: int, *, policy: EgressPolicy) -> list[IPAddress]:
    """Every address `host` resolves to, once each passed `policy` (BlockedDestination
    otherwise), for a client that is not HTTP (SMTP) to connect to exactly these: there is no
    second lookup to rebind. OSError when the name does not resolve."""
    try:
        return await _checked_addresses(host, port, policy)
    except _Unresolvable as exc:
        raise OSError(str(exc)) from None


async def check_host(host: str, port: int, *, policy: EgressPolicy, timeout: float = 5.0) -> None:
    """`check_destination` for a host and port rather than a URL (an SMTP server's)."""
    try:
        async with asyncio.timeout(timeout):
            await _checked_addresses(host, port, policy)
    except (_Unresolvable, TimeoutError):
        return


class _Unresolvable(Exception):
    pass


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Unresolvable(f"cannot resolve {host}: {exc.strerror}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def _checked_addresses(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    addresses = await _resolve(host, port)
    if policy.allows_host(host, port):
        return addresses
    for address in addresses:
        reason = _why_not_public(address)
        if reason is None or policy.allows_address(address):
            continue
        if _is_ip_literal(host):
            found = f"{host} is {reason}"
        else:
            found = f"{host} resolves to {address}, {reason}"
        raise BlockedDestination(
            f"{found}; add {_allow_entry(host, port)} to BATON_HTTP_ALLOW_HOSTS or the network "
            "to BATON_HTTP_ALLOW_NETWORKS to allow it"
        )
    return addresses


def _allow_entry(host: str, port: int) -> str:
    """The narrowest BATON_HTTP_ALLOW_HOSTS entry that lets this connection through."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port in BARE_HOST_PORTS else f"{shown}:{port}"


def _why_not_public(address: IPAddress) -> str | None:
    embedded = embedded_ipv4(address)
    if embedded is not None:
        reason = _why_not_public(embedded)
        return f"{reason} ({embedded}) inside an IPv6 address" if reason else None
    if address in _METADATA_ADDRESSES:
        return "the cloud metadata service's address"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _CARRIER_GRADE_NAT, "a carrier-grade NAT address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _is_ip_literal(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


_Stream = TypeVar("_Stream")


async def _connect_checked(
    host: str,
    port: int,
    policy: EgressPolicy,
    connect: Callable[[str], Awaitable[_Stream]],
    connect_errors: tuple[type[Exception], ...],
) -> _Stream:
    """Resolves, checks and connects in one step, to exactly the addresses it checked: the
    first one that answers. Raises the last connect error when none does."""
    addresses = await _checked_addresses(host, port, policy)
    failure: Exception | None = None
    for address in addresses:
        try:
            return await connect(str(address))
        except connect_errors as exc:
            failure = exc
    raise failure or _Unresolvable(f"{host} resolves to no address")


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend (httpx, for http steps and URL imports), checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async def connect(address: str) -> httpcore.AsyncNetworkStream:
            return await self._inner.connect_tcp(
                address, port, timeout, local_address, socket_options
            )

        try:
            return await _connect_checked(
                host, port, self._policy, connect, (httpcore.ConnectError, httpcore.ConnectTimeout)
            )
        except _Unresolvable as exc:
            raise httpcore.ConnectError(str(exc)) from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedDestination("unix sockets are never reachable from outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedProviderBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's network backend (httpx2, for the provider SDKs), checked the same way."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        async def connect(address: str) -> httpcore2.AsyncNetworkStream:
            return await self._inner.connect_tcp(
                address, port, timeout, local_address, socket_options
            )

        try:
            return await _connect_checked(
                host,
                port,
                self._policy,
                connect,
                (httpcore2.ConnectError, httpcore2.ConnectTimeout),
            )
        except (_Unresolvable, BlockedDestination) as exc:
            # A connection error to the SDKs, which wrap only those; the refusal stays its
            # cause, for the caller to tell "refused" from "unreachable".
            raise httpcore2.ConnectError(str(exc)) from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise BlockedDestination("unix sockets are never reachable from outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False)
        limits = httpx.Limits()
        # httpx has no public way to give its pool a network backend; the rest of
        # AsyncHTTPTransport (request and error mapping) is used as it is.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


class _GuardedProviderTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False)
        limits = httpx2.Limits()
        # As above, for httpx2: its pool gets the checked backend.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedProviderBackend(policy),
        )
