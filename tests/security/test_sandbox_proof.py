"""Finding 5 of issue #13, the image proof: the built image is repository code and the imager runs
it. Here a real image (on the real Docker Engine, from the local base image) whose CMD probes
everything the worker can reach is proven by the real DockerProver."""

from __future__ import annotations

import uuid

import docker
import pytest

from services.imager.adapters.docker_prover import DockerProver
from tests.security.sandbox_probe import (
    METADATA,
    PIPELINE_PORTS,
    Listener,
    assert_contained,
    new_secret,
    probe_source,
    read_probe,
)

BASE = "kiln-base:bookworm-amd64"
BRIDGE_GATEWAY = "172.17.0.1"  # the host as a container on Docker's default bridge sees it


@pytest.fixture
def client():
    engine = docker.from_env()
    engine.images.get(BASE)  # built by ./kiln-dev up; missing = a failure, never a skip
    return engine


@pytest.fixture
def listener():
    started = Listener(host="0.0.0.0")
    yield started
    started.close()


def _image(client, tmp_path, command: str) -> str:
    (tmp_path / "probe.py").write_text(command)
    (tmp_path / "Dockerfile").write_text(
        f'FROM {BASE}\nCOPY probe.py /app/probe.py\nENV PORT=8080\nCMD ["python3", "/app/probe.py"]\n'
    )
    tag = f"kiln-security-probe:{uuid.uuid4().hex[:12]}"
    client.images.build(path=str(tmp_path), tag=tag, rm=True)
    return tag


def test_the_proven_image_reaches_no_service_no_host_and_no_secret(tmp_path, client, listener, monkeypatch):
    secret = new_secret()
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", secret)  # in the worker proving the image
    targets = [("127.0.0.1", port) for port in PIPELINE_PORTS]
    targets += [(BRIDGE_GATEWAY, listener.port), (BRIDGE_GATEWAY, 2375), METADATA]
    command = probe_source(targets) + (
        "import os, time\n"
        "print(kiln_probe(), flush=True)\n"
        "for path in ('/app/written', '/tmp/written'):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('WROTE', path, flush=True)\n"
        "    except OSError as problem:\n"
        "        print('READ-ONLY', path, type(problem).__name__, flush=True)\n"
        "time.sleep(120)\n"
    )
    reference = _image(client, tmp_path, command)
    try:
        proof = DockerProver(client, stay_up_s=6, timeout_s=60).prove(
            reference, platform="linux/amd64", port=None, health_path=None
        )
    finally:
        client.images.remove(reference, force=True)
    assert proof.ok, proof
    log = "\n".join(proof.log)
    seen = read_probe(log)
    assert seen["uid"] == 65534
    assert_contained(seen, secret, listener, own_proc=True)
    assert "READ-ONLY /app/written" in log and "WROTE /tmp/written" in log
    assert secret not in log


def test_a_service_is_proven_through_its_health_path_without_a_published_port(tmp_path, client):
    server = (
        "import http.server, os\n"
        "class Health(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == '/healthz' else 404); self.end_headers()\n"
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Health).serve_forever()\n"
    )
    reference = _image(client, tmp_path, server)
    try:
        proof = DockerProver(client, timeout_s=60).prove(
            reference, platform="linux/amd64", port=8080, health_path="/healthz"
        )
        assert not client.containers.list(all=True, filters={"ancestor": reference})  # removed after
    finally:
        client.images.remove(reference, force=True)
    assert proof.ok and proof.reason == "/healthz answered", proof


def test_a_missing_import_is_still_named_by_the_confined_proof(tmp_path, client):
    reference = _image(client, tmp_path, "import core.missing_factory\n")
    try:
        proof = DockerProver(client, timeout_s=60).prove(
            reference, platform="linux/amd64", port=None, health_path=None
        )
    finally:
        client.images.remove(reference, force=True)
    assert not proof.ok and proof.missing == "core", proof


def test_the_daemonless_proof_runs_the_image_in_the_sandbox(tmp_path, client, monkeypatch):
    """buildah backend: `buildah run --isolation chroot` shared the worker's network; now the CMD
    runs in bubblewrap on the mounted image. The listener is on the worker's own loopback."""
    import subprocess

    from services.imager.adapters.buildah import GLOBAL_OPTIONS
    from services.imager.adapters.buildah_prover import BuildahProver

    listener = Listener()
    secret = new_secret()
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", secret)
    targets = [("127.0.0.1", port) for port in (*PIPELINE_PORTS, listener.port)] + [METADATA]
    command = probe_source(targets) + "import time\nprint(kiln_probe(), flush=True)\ntime.sleep(120)\n"
    reference = _image(client, tmp_path, command)
    buildah = ["buildah", *GLOBAL_OPTIONS]
    try:
        pulled = f"docker-daemon:{reference}"
        subprocess.run([*buildah, "pull", "-q", pulled], check=True, capture_output=True)
        proof = BuildahProver(stay_up_s=4, timeout_s=60).prove(
            reference, platform="linux/amd64", port=None, health_path=None
        )
    finally:
        subprocess.run([*buildah, "rmi", "-f", reference], capture_output=True)
        client.images.remove(reference, force=True)
        listener.close()
    assert proof.ok, proof
    seen = read_probe("\n".join(proof.log))
    assert seen["uid"] == 65534
    assert_contained(seen, secret, listener)
