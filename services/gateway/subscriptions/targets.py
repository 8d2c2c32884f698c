"""Where a subscription may deliver: public addresses only, unless the operator allow-lists a host.

Whoever holds the API token registers URLs, but the gateway sits next to the broker, the
database, the registry and a cloud metadata address; a URL must not turn it into a proxy to them.
The URL is checked at registration (a clear 422) and again before every delivery, against the
addresses its host resolves to *then*, and the request is sent to the address that was checked
(the name travels only in the Host header and the TLS SNI). A DNS answer that changes between the
check and the connect (rebinding) therefore reaches nothing new.

The allow-list (KILN_SUBSCRIPTION_ALLOWED_HOSTS) holds host names, IP addresses and networks: a
listed name may resolve anywhere (the operator vouches for it), a listed address or network may
be reached by any name resolving into it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
ALLOW_SETTING = "KILN_SUBSCRIPTION_ALLOWED_HOSTS"
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Checked in this order: the first that matches names the refusal.
_CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("loopback", lambda ip: ip.is_loopback),
    ("unspecified", lambda ip: ip.is_unspecified),
    ("link-local (cloud metadata lives here)", lambda ip: ip.is_link_local),
    ("carrier-grade NAT", lambda ip: ip.version == 4 and ip in _CGNAT),
    ("multicast", lambda ip: ip.is_multicast),
    ("private", lambda ip: ip.is_private),
    ("reserved", lambda ip: ip.is_reserved),
    ("non-public", lambda ip: not ip.is_global),
)


class TargetRefused(ValueError):
    """The URL may not receive deliveries; the message says why and what the operator can set."""


@dataclass(frozen=True)
class Target:
    url: str  # as registered
    host: str  # the name, for the Host header and TLS SNI
    address: str  # the checked address the request goes to
    connect_url: str  # `url` with the host replaced by `address`
    host_header: str


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_class(address: str) -> str | None:
    """Why an address is refused (`loopback`, `private` …), or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 address: judge the inner one.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            return "Teredo tunnel"
    return next((label for label, matches in _CLASSES if matches(ip)), None)


class AllowList:
    def __init__(self, entries: Iterable[str] = ()):
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry)

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def allows_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return any(ip.version == net.version and ip in net for net in self.networks)


async def check(url: str, allow: AllowList, resolver: Resolver = resolve) -> Target:
    """The Target to deliver to, or TargetRefused naming the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url!r}: only http and https URLs with a host can be subscribed")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL carries credentials: drop them and verify X-Kiln-Signature instead")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolver(host, port)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    if not allow.allows_name(host):
        for address in addresses:
            label = address_class(address)
            if label is not None and not allow.allows_address(address):
                raise TargetRefused(
                    f"{host} resolves to a {label} address: subscriptions reach public addresses "
                    f"only (an operator can allow a host with {ALLOW_SETTING})"
                )
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    default_port = parts.port is None
    netloc = literal if default_port else f"{literal}:{port}"
    return Target(
        url=url,
        host=host,
        address=address,
        connect_url=urlunsplit(parts._replace(netloc=netloc)),
        host_header=parts.netloc.rsplit("@", 1)[-1],
    )
