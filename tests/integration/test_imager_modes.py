"""Plain Dockerfile mode, bad input, registry auth failure and prune, on the real parts."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
import uuid

import aio_pika
import pytest

from services.imager.adapters.docker_engine import DockerEngineBuilder
from services.imager.ports import RegistryAuth
from shared.artifacts import push_artifact
from shared.bus import Bus
from shared.bus import topology as t
from shared.bus.errors import ERROR_HEADER
from shared.events.compile import Artifact, ImageRequested
from shared.naming import image_repository
from shared.registry import RegistryClient
from tests.integration.imager_support import (
    ROOT,
    dockerfile_operator_config,
    required_env,
    start_worker,
    stop_worker,
)
from tests.integration.test_imager_pipeline import Recorder

pytestmark = pytest.mark.integration
PROJECT = f"kilnit{uuid.uuid4().hex[:6]}"
VERSION = "prism"
PACKAGE = "plain"
SERVICES = ("plain", "livelog", "nobase", "badcreds")


@pytest.fixture(scope="module")
def registry():
    client = RegistryClient(
        required_env("KILN_REGISTRY_URL"),
        required_env("KILN_REGISTRY_USERNAME"),
        required_env("KILN_REGISTRY_PASSWORD"),
    )
    yield client
    client.close()


def repository(registry: RegistryClient, name: str, platform: str = "linux/amd64") -> str:
    """The repository the operator config derives (the only one the imager pushes to)."""
    return image_repository(registry.host, PROJECT, VERSION, name, PACKAGE, platform)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def plain_artifact(tmp_path_factory, store) -> Artifact:
    """A repository with its own Dockerfile, stored in a shared directory (file:// store)."""
    src = tmp_path_factory.mktemp("plain")
    base = required_env("KILN_BASE_IMAGE_AMD64")
    (src / "Dockerfile").write_text(f'FROM {base}\nCOPY app.py /srv/app.py\nCMD ["python3", "/srv/app.py"]\n')
    (src / "app.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    (src / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot for images\n")
    stored = push_artifact(src, store=f"file://{store}", package=PACKAGE, build="b1", platform="linux/amd64")
    return Artifact(platform="linux/amd64", reference=stored.reference, digest=stored.digest)


@pytest.fixture(scope="module")
def workers(amqp_url, database_url, tmp_path_factory, registry, store):
    work = tmp_path_factory.mktemp("imager-modes")
    base = required_env("KILN_BASE_IMAGE_AMD64")  # the arm64 job below never gets past its push
    config = dockerfile_operator_config(
        work / "operator",
        PACKAGE,
        registry.host,
        {"linux/amd64": base, "linux/arm64": base},
        services=SERVICES,
        project=PROJECT,
    )
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": str(config),
        "KILN_ARTIFACT_STORE": f"file://{store}",
        "KILN_IMAGER_WORK_DIR": str(work),
        "KILN_PROVE_STAY_UP_S": "2",
        # these tests read what a proof prints; jobs of one content would reuse the first proof
        "KILN_IMAGER_REUSE_PROOFS": "false",
        "KILN_RETRY_BASE_DELAY_S": "0.1",  # the whole retry budget in ~15 s instead of ~3 min
    }
    good = start_worker("linux/amd64", env, work / "amd64.log", "--no-manifests")
    wrong = {**env, "KILN_REGISTRY_PASSWORD": f"wrong-{uuid.uuid4().hex}"}
    bad = start_worker("linux/arm64", wrong, work / "arm64-bad-creds.log", "--no-manifests")
    yield work
    stop_worker(good)
    stop_worker(bad)


def plain_job(artifact: Artifact, registry: RegistryClient, name: str, **overrides) -> ImageRequested:
    values = dict(
        target=name,
        platform="linux/amd64",
        artifact=artifact,
        base_image=required_env("KILN_BASE_IMAGE_AMD64"),
        dockerfile="Dockerfile",
        tags=("latest", "b1"),
    )
    values.update(overrides)
    values["repository"] = repository(registry, name, values["platform"])
    return ImageRequested(**values)


async def run_jobs(amqp_url, jobs, wait_for: str, count: int, timeout: float = 90):
    bus = await Bus(amqp_url, source="test").connect()
    recorder = Recorder()
    await bus.subscribe_transient(f"imager-modes-{uuid.uuid4().hex[:4]}", ["#"], recorder)
    build_id = str(uuid.uuid4())
    for job in jobs:
        await bus.emit(job, build_id=build_id, package=PACKAGE)
    try:
        return await recorder.wait(wait_for, build_id, count, timeout=timeout)
    finally:
        await bus.stop(grace_s=5)


async def test_plain_dockerfile_is_built_as_is_proven_and_pushed_without_secrets(
    amqp_url, workers, plain_artifact, registry
):
    (pushed,) = await run_jobs(
        amqp_url, [plain_job(plain_artifact, registry, "plain")], ".image.pushed.v1", 1
    )
    assert pushed.data["proven"]
    repo = repository(registry, "plain").split("/", 1)[1]
    assert registry.manifest_digest(repo, "latest") == pushed.data["digest"]
    listing = subprocess.run(
        ["docker", "run", "--rm", f"{registry.host}/{repo}:b1", "ls", "/srv"], capture_output=True, text=True
    )
    assert listing.stdout.split() == ["app.py"]


async def test_image_worker_ships_build_proof_and_push_lines_live(
    amqp_url, workers, plain_artifact, registry
):
    """The worker process (python -m services.imager) publishes its builder's output on kiln.logs
    while stage image and stage push run, each stage's lines before its stage.finished."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    logs = await channel.declare_exchange(t.LOGS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    events = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(logs, "log.*.amd64")
    await queue.bind(events, "stage.finished")
    try:
        (pushed,) = await run_jobs(
            amqp_url, [plain_job(plain_artifact, registry, "livelog")], ".image.pushed.v1", 1
        )
        arrived = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            body = json.loads(message.body)
            if body["buildid"] == pushed.buildid:
                arrived.append((message.routing_key, body))
    finally:
        await connection.close()
    order = [k if k.startswith("log.") else f"{k}:{b['data']['stage']}" for k, b in arrived]
    assert order.index("log.image.amd64") < order.index("stage.finished:image")
    assert order.index("log.push.amd64") < order.index("stage.finished:push")
    assert order.index("stage.finished:image") < order.index("log.push.amd64")
    lines = {stage: [] for stage in ("image", "push")}
    for key, body in arrived:
        if key.startswith("log."):
            assert (body["data"]["target"], body["data"]["platform"]) == ("livelog", "linux/amd64")
            lines[body["data"]["stage"]] += body["data"]["lines"]
    image, push = "\n".join(lines["image"]), "\n".join(lines["push"])
    assert "building " in image and "COPY app.py /srv/app.py" in image  # the builder's own output
    assert "proof passed: still running" in image
    assert f"pushing {repository(registry, 'livelog')}:b1" in push
    assert "Pushed" in push or "Layer already exists" in push  # docker push's per-layer states
    assert pushed.data["digest"] in push
    assert required_env("KILN_REGISTRY_PASSWORD") not in image + push


async def test_failing_build_step_reports_image_failed_with_log_tail(
    amqp_url, workers, plain_artifact, registry
):
    job = plain_job(plain_artifact, registry, "nobase", dockerfile="Missing.Dockerfile")
    (failed,) = await run_jobs(amqp_url, [job], ".image.failed.v1", 1)
    assert "Missing.Dockerfile" in failed.data["error"] or failed.data["log_tail"]
    assert len(failed.data["log_tail"]) <= 50


async def test_registry_auth_failure_is_retried_then_dead_lettered_with_a_clear_error(
    amqp_url, workers, plain_artifact, registry
):
    # The plain tree is the same on every platform: its artifact serves as the arm64 one (the
    # imager refuses a job whose artifact is for another platform than the job).
    arm64 = plain_artifact.model_copy(update={"platform": "linux/arm64"})
    job = plain_job(arm64, registry, "badcreds", platform="linux/arm64")
    bus = await Bus(amqp_url, source="test").connect()
    await bus.emit(job, build_id=str(uuid.uuid4()), package=PACKAGE)
    await bus.stop(grace_s=5)
    dlq = t.imager_queue("arm64").dead_letter_queue
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(dlq, ensure=False)
        deadline = asyncio.get_running_loop().time() + 60  # 4 retries: 1+2+4+8 s of back-off
        message = None
        while message is None and asyncio.get_running_loop().time() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            await asyncio.sleep(0.5)
    assert message is not None, "the job never reached the dead-letter queue"
    error = message.headers[ERROR_HEADER]
    assert "gave up" in error and "KILN_REGISTRY_PASSWORD" in error


def tiny_image(builder: DockerEngineBuilder, reference: str, number: int) -> None:
    buffer = io.BytesIO()
    dockerfile = f"FROM {required_env('KILN_BASE_IMAGE_AMD64')}\nLABEL n={number}\n".encode()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    builder.build(buffer.getvalue(), reference, platform="linux/amd64")


def test_registry_prune_keeps_exactly_the_newest_n_builds(registry):
    builder = DockerEngineBuilder()
    auth = RegistryAuth(required_env("KILN_REGISTRY_USERNAME"), required_env("KILN_REGISTRY_PASSWORD"))
    repo = f"{PROJECT}/prune-me"
    for number in range(1, 6):
        reference = f"{registry.host}/{repo}:b{number}"
        tiny_image(builder, reference, number)
        builder.push(reference, auth)
    command = [sys.executable, "-m", "services.imager", "registry-prune", "--repo", repo, "--keep", "2"]
    dry = subprocess.run([*command, "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert sorted(registry.list_tags(repo)) == ["b1", "b2", "b3", "b4", "b5"]
    real = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert real.returncode == 0, real.stderr
    assert sorted(registry.list_tags(repo)) == ["b4", "b5"]


def test_preflight_reports_daemon_and_registry_reachable():
    result = subprocess.run(
        [sys.executable, "-m", "services.imager", "preflight"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "docker: ok" in result.stdout and "registry" in result.stdout


def test_buildah_backend_builds_and_pushes_without_a_daemon(plain_artifact, registry, tmp_path):
    from services.imager.adapters.buildah import BuildahBuilder
    from services.imager.build_context import directory_context
    from shared.artifacts import pull_artifact

    auth = RegistryAuth(required_env("KILN_REGISTRY_USERNAME"), required_env("KILN_REGISTRY_PASSWORD"))
    builder = BuildahBuilder(auth=auth)
    source = pull_artifact(plain_artifact.reference, tmp_path / "src")
    reference = f"{registry.host}/{PROJECT}/buildah:b1"
    built = builder.build(directory_context(source), reference, platform="linux/amd64")
    from services.imager.adapters.buildah_prover import BuildahProver

    proof = BuildahProver(stay_up_s=2).prove(reference, platform="linux/amd64", port=None, health_path=None)
    assert proof.ok, proof.reason
    builder.tag(built.image_id, f"{registry.host}/{PROJECT}/buildah:latest")
    pushed = builder.push(reference, auth)
    assert registry.manifest_digest(f"{PROJECT}/buildah", "b1") == pushed.digest
    _, _, body = registry.get_manifest(f"{PROJECT}/buildah", pushed.digest)
    config = json.loads(registry.get_blob(f"{PROJECT}/buildah", json.loads(body)["config"]["digest"]))
    assert config["architecture"] == "amd64" and config["config"]["Cmd"] == ["python3", "/srv/app.py"]
