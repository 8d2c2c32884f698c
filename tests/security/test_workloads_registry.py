"""Finding 11 on real sockets and the real registry: registry credentials never cross a network in
clear text unless the operator listed the host in KILN_REGISTRY_INSECURE_HOSTS.

The outsider is a listener on a non-loopback address of this machine that records every request;
the tests assert what reached it."""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from shared.registry import InsecureRegistryRefused, RegistryClient, RegistryUnavailable
from shared.registry.transport import registry_base_url

pytestmark = pytest.mark.integration


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 401 and a Bearer challenge whose realm is `realm` (plain HTTP)."""

    seen: list[dict[str, str]]
    realm: str

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
        self.send_response(401)
        realm = self.realm or f"http://{self.headers['Host']}/token"
        self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="x"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(address: str, realm: str = "") -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen, "realm": realm})
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{address}:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def outside_address() -> str:
    """An address of this host that is not loopback (the source address of its default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing: it only picks the route
        address = probe.getsockname()[0]
    assert not ipaddress.ip_address(address).is_loopback, address
    return address


@pytest.fixture
def outsider(outside_address):
    with serving(outside_address) as served:
        yield served


def _credentials() -> tuple[str, str]:
    return os.environ["KILN_REGISTRY_USERNAME"], os.environ["KILN_REGISTRY_PASSWORD"]


def test_plain_http_with_credentials_to_a_non_loopback_host_is_refused_before_any_request(outsider):
    host, seen = outsider
    user, password = _credentials()
    with pytest.raises(InsecureRegistryRefused, match="KILN_REGISTRY_INSECURE_HOSTS") as refused:
        RegistryClient(f"http://{host}", user, password)
    assert host in str(refused.value) and password not in str(refused.value)
    assert seen == []  # nothing was sent, not even a request without credentials


def test_a_bare_non_loopback_host_gets_https_so_the_plain_listener_never_sees_credentials(outsider):
    host, seen = outsider
    user, password = _credentials()
    assert registry_base_url(host) == f"https://{host}"
    with RegistryClient(host, user, password, timeout=5) as client, pytest.raises(RegistryUnavailable):
        client.ping()  # a TLS handshake against a plain-HTTP listener: fails, says nothing
    assert seen == []


def test_only_a_listed_host_gets_plain_http(outsider):
    host, seen = outsider
    user, password = _credentials()
    with RegistryClient(host, user, password, insecure_hosts={host}, timeout=5) as client:
        assert client.base_url == f"http://{host}"
        with pytest.raises(Exception):  # noqa: B017 - the outsider answers 401 forever
            client.ping()
    assert seen and seen[0]["path"] == "/v2/"  # the operator chose this; the request went


def test_token_realm_over_plain_http_elsewhere_gets_no_basic_credentials(outsider):
    """A loopback registry whose 401 names a plain-HTTP token realm on another host: the client
    follows the challenge but sends the realm no Basic credentials."""
    realm_host, realm_seen = outsider
    user, password = _credentials()
    with (
        serving("127.0.0.1", realm=f"http://{realm_host}/token") as (registry, registry_seen),
        RegistryClient(registry, user, password, timeout=5) as client,
        pytest.raises(Exception),  # noqa: B017 - no token comes back: the ping fails
    ):
        client.ping()
    assert registry_seen and realm_seen, (registry_seen, realm_seen)
    assert all(r["authorization"] == "" for r in realm_seen), realm_seen


def test_the_loopback_registry_still_works_over_plain_http_without_being_listed():
    user, password = _credentials()
    with RegistryClient(os.environ.get("KILN_REGISTRY_URL", "127.0.0.1:5000"), user, password) as client:
        assert client.base_url.startswith("http://127.0.0.1")
        client.ping()
