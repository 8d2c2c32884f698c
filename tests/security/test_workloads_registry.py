"""Finding 11 on real sockets and the real registry: registry credentials never cross a network in
clear text unless the operator listed the host in KILN_REGISTRY_INSECURE_HOSTS.

The outsider is a listener on a non-loopback address of this machine that records every request;
the tests assert what reached it."""

from __future__ import annotations

import contextlib
import http.server
import io
import ipaddress
import os
import socket
import tarfile
import threading
from collections.abc import Iterator

import pytest

from services.imager.adapters.buildah import BuildahBuilder
from services.imager.ports import BuildFailed, RegistryAuth
from shared.registry import InsecureRegistryRefused, RegistryClient, RegistryUnavailable
from shared.registry.transport import parse_hosts, registry_base_url

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


@contextlib.contextmanager
def relay_to_registry(address: str) -> Iterator[str]:
    """The real local registry (plain HTTP, loopback only) reachable on a non-loopback address:
    what a plain-HTTP registry elsewhere on the network looks like to Kiln."""
    target = os.environ.get("KILN_REGISTRY_URL", "127.0.0.1:5000").rsplit(":", 1)
    listener = socket.create_server((address, 0))
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by the caller
                return
            upstream = socket.create_connection((target[0], int(target[1])))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"{address}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def test_buildah_refuses_a_plain_http_registry_elsewhere_and_names_the_setting(outside_address):
    """The real buildah pulling a base image from a plain-HTTP registry on a non-loopback address:
    TLS is verified, the build fails, and the reason says what the operator can set."""
    user, password = _credentials()
    with relay_to_registry(outside_address) as registry:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            data = f"FROM {registry}/kiln/base:bookworm-amd64\nUSER 65532:65532\n".encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        builder = BuildahBuilder(auth=RegistryAuth(user, password), timeout_s=120)
        with pytest.raises(BuildFailed, match="KILN_REGISTRY_INSECURE_HOSTS") as failed:
            builder.build(buffer.getvalue(), f"{registry}/kiln/tls-probe:b1", platform="linux/amd64")
        assert registry.split(":")[0] in str(failed.value) and password not in str(failed.value)

        # The operator names the host: the same registry is then used over plain HTTP.
        with RegistryClient(registry, user, password, insecure_hosts=parse_hosts(registry)) as client:
            client.ping()
