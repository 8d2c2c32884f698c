"""Which registries may be spoken to without TLS: loopback always, any other host only when the
operator lists it in KILN_REGISTRY_INSECURE_HOSTS (`host:port,host2`), which is logged at start.

One rule for every registry caller (the client, buildah, trivy, the k3s mirrors file): a host that
is not allowed gets https with certificate checks, and an explicit `http://` URL for it is refused,
so Basic credentials never cross a network in clear text unless the operator said so for that host.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from shared.registry.errors import RegistryError

INSECURE_HOSTS_SETTING = "KILN_REGISTRY_INSECURE_HOSTS"


class InsecureRegistryRefused(RegistryError):
    """Plain HTTP (or no certificate check) to a host the operator did not allow. Permanent."""


def parse_hosts(text: str | Iterable[str] | None) -> frozenset[str]:
    """`"registry:5000, mirror.lan"` → {"registry:5000", "mirror.lan"} (lower case, no scheme)."""
    if not text:
        return frozenset()
    items = text.split(",") if isinstance(text, str) else text
    return frozenset(registry_host(item) for item in items if item.strip())


def registry_host(registry: str) -> str:
    """`https://Host:5000/` or `host:5000/kiln/app:tag` → `host:5000` (the part TLS is about)."""
    registry = registry.strip()
    for scheme in ("http://", "https://", "docker://"):
        if registry.lower().startswith(scheme):
            registry = registry[len(scheme) :]
    return registry.split("/", 1)[0].lower()


def _hostname(host: str) -> str:
    if host.startswith("["):  # [::1]:5000
        return host[1:].split("]", 1)[0]
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() and ":" not in name else host


def is_loopback(registry: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: traffic that never leaves this machine."""
    name = _hostname(registry_host(registry))
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_allowed(registry: str, insecure_hosts: Iterable[str] = ()) -> bool:
    """True for loopback and for hosts the operator listed (with or without the port)."""
    host = registry_host(registry)
    allowed = parse_hosts(insecure_hosts)
    return is_loopback(host) or host in allowed or _hostname(host) in allowed


def refuse_plain_http(registry: str) -> InsecureRegistryRefused:
    host = registry_host(registry)
    return InsecureRegistryRefused(
        f"registry {registry!r}: plain HTTP to {host}, a non-loopback host, is refused (credentials "
        f"would cross the network in clear text); use https, or if the network to it is private, "
        f"add {host} to {INSECURE_HOSTS_SETTING}"
    )


def registry_base_url(registry: str, insecure_hosts: Iterable[str] = ()) -> str:
    """`host[:port]` or a URL → base URL: https unless the host may use plain HTTP (see module)."""
    registry = registry.strip().rstrip("/")
    if registry.lower().startswith("https://"):
        return registry
    allowed = plain_http_allowed(registry, insecure_hosts)
    if registry.lower().startswith("http://"):
        if not allowed:
            raise refuse_plain_http(registry)
        return registry
    return f"{'http' if allowed else 'https'}://{registry}"


_PLAIN_HTTP_ANSWER = "http response to https client"


def with_tls_hint(message: str, registry: str) -> str:
    """A tool's error when a registry answered plain HTTP to TLS: say what the operator can set."""
    if _PLAIN_HTTP_ANSWER not in message.lower():
        return message
    host = registry_host(registry)
    return (
        f"{message} ({host} speaks plain HTTP, and TLS is required for non-loopback registries: "
        f"give it TLS, or if the network to it is private, add {host} to {INSECURE_HOSTS_SETTING})"
    )


def log_insecure_hosts(insecure_hosts: Iterable[str], log: logging.Logger) -> None:
    """Called once at start by each service that talks to registries: the opt-in is never silent."""
    for host in sorted(parse_hosts(insecure_hosts)):
        log.warning(
            "%s lists %s: registry traffic to it is plain HTTP / unverified TLS, credentials included",
            INSECURE_HOSTS_SETTING,
            host,
        )
