"""The imager end to end on real parts: RabbitMQ, MariaDB, Docker Engine, registry:2, QEMU for arm64.

Two worker processes (amd64, arm64) build the example package's four services for both platforms
from compiled artifacts in the registry, prove each starts, push them, and assemble multi-arch
indexes; an over-stripped service fails with the missing factory named and is never pushed.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from shared.artifacts import push_artifact
from shared.bus import Bus
from shared.config.loader import load_config
from shared.events import Envelope, decode
from shared.events.compile import Artifact, CompileCompleted, ImageRequested, TargetPlatform
from shared.naming import image_repository
from shared.registry import NotFound, RegistryClient
from shared.registry import manifests as mf
from tests.integration.imager_support import (
    EXAMPLE,
    PLATFORMS,
    compile_example,
    required_env,
    start_worker,
    stop_worker,
)

OPERATOR_CONFIG = EXAMPLE.parent / "operator" / "config.yaml"

pytestmark = pytest.mark.integration
PACKAGE = "demo"
VERSION = f"it{uuid.uuid4().hex[:6]}"


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
def artifacts(tmp_path_factory, registry):
    trees = compile_example(tmp_path_factory.mktemp("compiled") / "out")
    stored = {}
    for platform, tree in trees.items():
        result = push_artifact(
            tree,
            store=f"{registry.host}/kiln",
            package=PACKAGE,
            build=VERSION,
            platform=platform,
            client=registry,
        )
        stored[platform] = Artifact(platform=platform, reference=result.reference, digest=result.digest)
    return stored


def base_image(platform: str) -> str:
    return required_env("KILN_BASE_IMAGE_ARM64" if platform == "linux/arm64" else "KILN_BASE_IMAGE_AMD64")


def requests_for(artifacts, registry, build_tag: str) -> list[ImageRequested]:
    package = load_config(OPERATOR_CONFIG).package(PACKAGE)
    jobs = []
    for name, service in sorted(package.enabled_services().items()):
        for platform in PLATFORMS:
            jobs.append(
                ImageRequested(
                    target=name,
                    platform=platform,
                    artifact=artifacts[platform],
                    base_image=base_image(platform),
                    tier=service.tier,
                    factories=tuple(service.factories),
                    command=tuple(service.command),
                    port=service.port,
                    health_path=service.health,
                    repository=image_repository(registry.host, "kiln", VERSION, name, PACKAGE, platform),
                    tags=("latest", build_tag),
                )
            )
    return jobs


class Recorder:
    def __init__(self):
        self.events = []

    async def __call__(self, message):
        self.events.append(decode(message.body))

    def of(self, type_suffix: str, build_id: str):
        return [e for e in self.events if e.type.endswith(type_suffix) and e.buildid == build_id]

    async def wait(self, type_suffix: str, build_id: str, count: int, timeout: float):
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.of(type_suffix, build_id)) < count:
            if asyncio.get_running_loop().time() > deadline:
                seen = [
                    (e.type, e.data.get("target"), e.data.get("error"))
                    for e in self.events
                    if e.buildid == build_id
                ]
                raise AssertionError(f"waited for {count} {type_suffix}; saw {seen}")
            await asyncio.sleep(0.2)
        return self.of(type_suffix, build_id)


@pytest.fixture(scope="module")
def workers(amqp_url, database_url, tmp_path_factory, artifacts):
    work = tmp_path_factory.mktemp("imager")
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": str(OPERATOR_CONFIG),
        "KILN_IMAGER_WORK_DIR": str(work),
        "KILN_PROVE_STAY_UP_S": "2",
        "KILN_PROVE_EMULATED_FACTOR": "3",
    }
    processes = [
        start_worker("linux/amd64", env, work / "amd64.log"),
        start_worker("linux/arm64", env, work / "arm64.log", "--no-manifests"),
    ]
    yield work
    for process in processes:
        stop_worker(process)


async def test_example_images_for_both_platforms_pushed_proven_and_indexed(
    amqp_url, workers, artifacts, registry
):
    bus = await Bus(amqp_url, source="test").connect()
    recorder = Recorder()
    await bus.subscribe_transient("imager-it", ["#"], recorder)
    build_id = str(uuid.uuid4())
    jobs = requests_for(artifacts, registry, "b1")
    targets = tuple(TargetPlatform(target=j.target, platform=j.platform) for j in jobs)
    await bus.emit(CompileCompleted(ok=True, targets=targets), build_id=build_id, package=PACKAGE)
    for job in jobs:
        await bus.emit(job, build_id=build_id, package=PACKAGE)

    pushed = await recorder.wait(".image.pushed.v1", build_id, len(jobs), timeout=240)
    assert {(e.data["target"], e.data["platform"]) for e in pushed} == {(j.target, j.platform) for j in jobs}
    assert all(e.data["proven"] and e.data["digest"].startswith("sha256:") for e in pushed)
    stages = recorder.of(".stage.finished.v1", build_id)
    assert {(e.data["stage"], e.data["status"]) for e in stages} == {
        ("image", "succeeded"),
        ("push", "succeeded"),
    }

    indexes = await recorder.wait(".manifest.pushed.v1", build_id, 4, timeout=60)
    for event in indexes:
        repo = event.data["repository"].split("/", 1)[1]
        media_type, _, body = registry.get_manifest(repo, event.data["tag"])
        assert media_type == mf.OCI_INDEX
        platforms = {
            f"{m['platform']['os']}/{m['platform']['architecture']}" for m in json.loads(body)["manifests"]
        }
        assert platforms == set(PLATFORMS)
    for job in jobs:  # the immutable tag and latest point at the proven image
        repo = job.repository.split("/", 1)[1]
        assert registry.manifest_digest(repo, "b1") == registry.manifest_digest(repo, "latest")

    # A replay (`kiln replay --from image`) rebuilds and re-proves the image under its new attempt,
    # although the earlier one is in the registry. A redelivery within an attempt (the worker died
    # between push and ack) is answered from the registry instead: test_imager_redelivery.py
    # kills a worker for real.
    again = Envelope.new(jobs[0], source="test", build_id=build_id, package=PACKAGE)
    await bus.publish(again.replayed())
    await recorder.wait(".image.pushed.v1", build_id, len(jobs) + 1, timeout=180)
    started = [e for e in recorder.of(".stage.started.v1", build_id) if e.data["stage"] == "image"]
    assert len(started) == len(jobs) + 1, "a replayed job is built and proven again"
    assert started[-1].attempt == 2
    await bus.stop(grace_s=5)


async def test_over_stripped_service_fails_naming_the_missing_factory(amqp_url, workers, artifacts, registry):
    bus = await Bus(amqp_url, source="test").connect()
    recorder = Recorder()
    await bus.subscribe_transient("imager-strip", ["#"], recorder)
    build_id = str(uuid.uuid4())
    platform = "linux/amd64"
    job = ImageRequested(
        target="report",
        platform=platform,
        artifact=artifacts[platform],
        base_image=base_image(platform),
        tier="report",
        factories=("report",),  # report.worker imports core: over-stripped on purpose
        command=("python3", "-m", "report.worker"),
        # Its own version: the repository must be the one derived for target `report` (the imager
        # refuses any other), and must not be the one the first test pushed.
        repository=image_repository(registry.host, "kiln", f"{VERSION}s", "report", PACKAGE, platform),
        tags=("latest", "b7"),
    )
    await bus.emit(job, build_id=build_id, package=PACKAGE)
    (failed,) = await recorder.wait(".image.failed.v1", build_id, 1, timeout=90)
    assert "report.worker" in failed.data["error"] and "core" in failed.data["error"]
    assert any("No module named 'core'" in line for line in failed.data["log_tail"])
    assert not recorder.of(".image.pushed.v1", build_id)
    with pytest.raises(NotFound):
        registry.manifest_digest(job.repository.split("/", 1)[1], "latest")
    await bus.stop(grace_s=5)
