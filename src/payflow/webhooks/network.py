"""Where webhooks may go: endpoint URLs, and the refusal of non-public addresses (SSRF).

A URL's host is resolved and every address it resolves to is checked: loopback, private
(RFC 1918, ULA), link-local (with the cloud metadata address 169.254.169.254), CGNAT,
multicast, reserved and unspecified addresses are refused unless the host or a network
holding the address is allow-listed (`webhook_allowed_private`). The check runs when an
endpoint is created or changed and again before every delivery, and the delivery then
connects to the very address checked, so a DNS answer that changes in between (DNS
rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

from payflow.errors import PayFlowError
from payflow.webhooks.domain import URL_LENGTH_MAX

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
RESOLVE_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Allowed:
    """The allow-list: host names, and networks, that may be private."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def admits(self, host: str, address: IPAddress) -> bool:
        return host.lower() in self.hosts or any(address in n for n in self.networks)


@dataclass(frozen=True, slots=True)
class Target:
    """A URL checked for delivery: connect to `address`, speak to `host`."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress


def parse_allowed(entries: Iterable[str]) -> Allowed:
    """`webhook_allowed_private` entries: networks (`10.0.0.0/8`, `::1`) or host names."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        name = entry.strip().lower().rstrip(".")
        if not name or len(name) > 253 or any(c in name for c in "/:@ \t"):
            raise ValueError(f"{entry!r} is neither a network nor a host name")
        hosts.add(name)
    return Allowed(frozenset(hosts), tuple(networks))


def _invalid(detail: str) -> PayFlowError:
    return PayFlowError("url_invalid", detail, http_status=422)


def check_url(url: str) -> SplitResult:
    """A syntactically acceptable endpoint URL: http(s), a host, no credentials."""
    if len(url) > URL_LENGTH_MAX:
        raise _invalid(f"a URL is at most {URL_LENGTH_MAX} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise _invalid("a URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _invalid(f"{url!r} is not a URL: {error}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise _invalid("the URL must start with https:// or http://")
    if not parts.hostname:
        raise _invalid("the URL has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and in the delivery log; sign instead.
        raise _invalid("the URL must not carry a user name or password")
    if port == 0:
        raise _invalid("port 0 is not a port one can connect to")
    return parts


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses, also when one is embedded in an
    IPv6 form (IPv4-mapped, 6to4, Teredo) that would reach the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None:
            return is_public(address.teredo[1])
    return address.is_global and not address.is_multicast


async def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError):
        infos = []
    found: list[IPAddress] = []
    for info in infos:
        # The scope of a link-local IPv6 address (`fe80::1%eth0`) is not part of it.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise PayFlowError(
            "url_unresolvable", f"the host {host!r} does not resolve", http_status=422
        )
    return found


async def resolve(url: str, allowed: Allowed) -> Target:
    """Check `url` and resolve its host; every address must be public or allow-listed.

    Raises `url_invalid`, `url_unresolvable` or `url_private` (422)."""
    parts = check_url(url)
    host = parts.hostname
    assert host is not None
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    addresses = await _addresses(host, port)
    for address in addresses:
        if not is_public(address) and not allowed.admits(host, address):
            raise PayFlowError(
                "url_private",
                f"{host!r} resolves to {address}, which is not a public address; "
                "webhooks go to public addresses only (see webhook_allowed_private)",
                http_status=422,
            )
    return Target(url=url, scheme=parts.scheme, host=host, port=port, address=addresses[0])
