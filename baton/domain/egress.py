"""What outbound connections an operator allows beyond the public internet: the one allow-list
that http steps, URL imports and provider base URLs share. Pure data and no I/O, so a
provider's configuration can carry it; baton/integrations/http.py is what enforces it.

A host entry is `host` or `host:port` (`[v6]:port` for an IPv6 address). A bare host allows
only the web's ports, 80 and 443: allowing `localhost` for one internal API must not open
every other port of it (the Temporal UI's HTTP API, the worker's neighbours) to every
tenant. A network entry allows every port of every address in it."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baton.settings import Settings

IPAddress = IPv4Address | IPv6Address

BARE_HOST_PORTS = frozenset({80, 443})
_NAT64 = IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class EgressPolicy:
    allow_hosts: frozenset[str] = frozenset()  # `host` or `host:port`, whatever they resolve to
    allow_networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(
            allow_hosts=frozenset(settings.http_allow_hosts),
            allow_networks=tuple(ip_network(n, strict=False) for n in settings.http_allow_networks),
        )

    def allows_host(self, host: str, port: int) -> bool:
        wanted = normal_host(host)
        for entry in self.allow_hosts:
            allowed, allowed_port = parse_host_entry(entry)
            if allowed == wanted and (
                port == allowed_port if allowed_port is not None else port in BARE_HOST_PORTS
            ):
                return True
        return False

    def allows_address(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        embedded = embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded)
        return any(c in network for c in candidates for network in self.allow_networks)


def parse_host_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (normal host, port or None); a bare IPv6
    address is a host. ValueError says what an entry should look like."""
    text = entry.strip()
    if any(c in text for c in "/@?# "):  # a URL, credentials or a path: not a host
        raise ValueError(_bad_entry(entry))
    host, port_text = text, ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(_bad_entry(entry))
        port_text = rest[1:]
        if rest and not port_text:
            raise ValueError(_bad_entry(entry))
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text:
            raise ValueError(_bad_entry(entry))
    if not host or any(c in host for c in "[]") or (":" in host and not _is_ipv6(host)):
        raise ValueError(_bad_entry(entry))
    if not port_text:
        return normal_host(host), None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{entry!r} has no port between 1 and 65535 after its host")
    return normal_host(host), int(port_text)


def normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if not isinstance(address, IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ip_address(host), IPv6Address)
    except ValueError:
        return False


def _bad_entry(entry: str) -> str:
    return (
        f"{entry!r} is not a host or host:port, such as api.internal.example (ports 80 and "
        "443), api.internal.example:8080 or [fd00::1]:8080"
    )
