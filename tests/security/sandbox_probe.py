"""What repository code tries once it runs (a MkDocs hook, an sdist's setup.py, an image's CMD),
and the real listener that tells, from its own side, whether anything reached it."""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field

# Ports of the services a pipeline host runs: RabbitMQ, MariaDB, the engine's Docker API.
PIPELINE_PORTS = (5672, 3306, 2375)
METADATA = ("169.254.169.254", 80)
MARKER = "KILN-PROBE "


def probe_source(targets: list[tuple[str, int]]) -> str:
    """A Python function `kiln_probe()` returning one line: MARKER + JSON of what it could get."""
    return f"""
def kiln_probe():
    import json, os, socket
    seen = {{"env": dict(os.environ), "uid": os.getuid()}}
    for path in ("/proc/self/environ", "/proc/1/environ", "/proc/%d/environ" % os.getppid()):
        try:
            with open(path, "rb") as handle:
                seen[path] = handle.read().decode(errors="replace")
        except Exception as problem:
            seen[path] = "refused: " + type(problem).__name__
    for host, port in {targets!r}:
        probe = socket.socket()
        probe.settimeout(1.5)
        try:
            probe.connect((host, port))
            seen["%s:%d" % (host, port)] = "CONNECTED"
        except Exception as problem:
            seen["%s:%d" % (host, port)] = "refused: " + type(problem).__name__
        finally:
            probe.close()
    return {MARKER!r} + json.dumps(seen).encode().hex()
"""


def read_probe(text: str) -> dict[str, object]:
    """The probe's findings out of a page, a log or a file (hex: no markup escapes it)."""
    found = re.search(MARKER + "([0-9a-f]+)", text)
    assert found, f"the probe did not run (no {MARKER!r} in {text[-500:]!r})"
    return json.loads(bytes.fromhex(found[1]))


def assert_contained(seen: dict, secret: str, listener: Listener, *, own_proc: bool = False) -> None:
    """Nothing reached the listener, no address answered, no secret anywhere in what the code saw.
    Unless `own_proc` (a container's /proc shows only the container), no /proc was readable."""
    assert listener.connections == [], f"the listener was reached: {listener.connections}"
    assert not [target for target, result in seen.items() if result == "CONNECTED"], seen
    for path in [key for key in seen if key.startswith("/proc/") and not own_proc]:
        assert str(seen[path]).startswith("refused"), f"{path} was readable: {seen[path][:200]!r}"
    leaked = [name for name in seen["env"] if name.startswith("KILN_") or name == "DOCKER_HOST"]
    assert not leaked, f"the code saw {leaked}"
    assert secret not in json.dumps(seen)


@dataclass
class Listener:
    """A real TCP listener: counts every connection anyone opened to it."""

    host: str = "127.0.0.1"
    connections: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._socket = socket.create_server((self.host, 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, peer = self._socket.accept()
            except OSError:
                return
            self.connections.append(peer)
            connection.close()

    def close(self) -> None:
        self._socket.close()


def new_secret() -> str:
    return "kiln-sandbox-secret-" + secrets.token_hex(16)
