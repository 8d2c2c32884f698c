"""System packages on the real parts: imager workers for amd64 and arm64 (python -m services.imager)
on RabbitMQ, the Docker Engine and the registry, apt on this host against its Debian mirror.

A service whose operator config asks for `system_packages: [imagemagick]` renders a PNG with
ImageMagick's `convert` when it starts, and prints what `identify` reads back; the imager's proof
(arm64 under QEMU) shows that line, so the packages work in both images. A second service asking
for the same set through its tier gets the very same layer (one digest in the registry) without
unpacking anything again, and a package that does not exist fails the image naming its key.
Caches start cold (a fresh work dir): apt's lists, the download and the unpack are all in the run.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest

from shared.artifacts import push_artifact
from shared.bus import Bus
from shared.bus import topology as t
from shared.events.compile import Artifact, ImageRequested
from shared.naming import image_repository
from shared.registry import NotFound, RegistryClient
from tests.integration.imager_support import PLATFORMS, required_env, start_worker, stop_worker
from tests.integration.test_imager_pipeline import Recorder

pytestmark = pytest.mark.integration
PROJECT = f"kilnsys{uuid.uuid4().hex[:6]}"
PACKAGE = "sysdemo"
VERSION = "prism"
RENDER = '''"""Renders a PNG with ImageMagick at start (the image's system packages), then keeps running."""

import subprocess
import time


def main():
    out = "/tmp/kiln-rendered.png"
    subprocess.run(["convert", "-size", "32x16", "gradient:red-blue", out], check=True)
    read = subprocess.run(
        ["identify", "-format", "%m %wx%h", out], check=True, capture_output=True, text=True
    )
    print(f"rendered {read.stdout} with ImageMagick", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
'''


def base_image(platform: str) -> str:
    return required_env(f"KILN_BASE_IMAGE_{platform.split('/')[1].upper()}")


def operator_config(directory, registry_host: str) -> str:
    directory.mkdir(parents=True)
    keys = directory.parent / "keys"  # never beside the operator config
    bases = ", ".join(f'{p}: "{base_image(p)}"' for p in PLATFORMS)
    service = "{command: [python3, -m, magick.render], factories: [magick]"
    text = f"""
version_map: {{"*": {VERSION}}}
factories: {{magick: {{path: magick}}}}
tiers:
  plain: {{}}
  magick: {{system_packages: [imagemagick]}}
packages:
  {PACKAGE}:
    factories: [magick]
    keys: {{dir: {keys}}}
    services:
      render: {service}, tier: plain, system_packages: [imagemagick]}}
      render-too: {service}, tier: magick}}
      broken: {service}, tier: plain, system_packages: [imagemagick, kiln-no-such-package]}}
    deployment:
      platforms: [{", ".join(PLATFORMS)}]
      registry: {{type: registry, host: "{registry_host}", project: {PROJECT}}}
      base_images: {{{bases}}}
"""
    path = directory / "config.yaml"
    path.write_text(text)
    return str(path)


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
def setup(amqp_url, database_url, tmp_path_factory, registry):
    work = tmp_path_factory.mktemp("imager-system")
    store = work / "store"
    source = work / "src"
    (source / "magick").mkdir(parents=True)
    (source / "magick" / "__init__.py").write_text("")
    (source / "magick" / "render.py").write_text(RENDER)
    (source / ".kiln-tiers.json").write_text(json.dumps({"plain": {}, "magick": {}}))
    artifacts = {}
    for platform in PLATFORMS:
        stored = push_artifact(
            source, store=f"file://{store}", package=PACKAGE, build="b1", platform=platform
        )
        artifacts[platform] = Artifact(platform=platform, reference=stored.reference, digest=stored.digest)
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": operator_config(work / "operator", registry.host),
        "KILN_ARTIFACT_STORE": f"file://{store}",
        "KILN_IMAGER_WORK_DIR": str(work / "imager"),
        "KILN_PROVE_STAY_UP_S": "2",
        # these tests read what a proof prints; jobs of one content would reuse the first proof
        "KILN_IMAGER_REUSE_PROOFS": "false",
    }
    workers = [
        start_worker(platform, env, work / f"{platform.split('/')[1]}.log", "--no-manifests")
        for platform in PLATFORMS
    ]
    yield artifacts
    for worker in workers:
        stop_worker(worker)


def request(artifacts, registry, target: str, platform: str) -> ImageRequested:
    return ImageRequested(
        target=target,
        platform=platform,
        artifact=artifacts[platform],
        base_image=base_image(platform),
        tier="magick" if target == "render-too" else "plain",
        factories=("magick",),
        command=("python3", "-m", "magick.render"),
        repository=image_repository(registry.host, PROJECT, VERSION, target, PACKAGE, platform),
        tags=("b1",),
    )


def verdicts_of(recorder: Recorder, build_id: str) -> list:
    return recorder.of(".image.pushed.v1", build_id) + recorder.of(".image.failed.v1", build_id)


async def run_jobs(amqp_url, jobs, timeout: float = 300):
    """Publish `jobs` as one build; each job's verdict (image.pushed or image.failed) and the image
    stage's live lines per target and platform."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    logs = await channel.declare_exchange(t.LOGS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    lines = await channel.declare_queue("", exclusive=True)
    await lines.bind(logs, "log.image.#")
    bus = await Bus(amqp_url, source="test").connect()
    recorder = Recorder()
    await bus.subscribe_transient(f"imager-system-{uuid.uuid4().hex[:4]}", ["#"], recorder)
    build_id = str(uuid.uuid4())
    try:
        for job in jobs:
            await bus.emit(job, build_id=build_id, package=PACKAGE)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(verdicts := verdicts_of(recorder, build_id)) < len(jobs):
            assert asyncio.get_running_loop().time() < deadline, f"no verdict for every job in {timeout} s"
            await asyncio.sleep(0.2)
        shipped: dict[tuple[str, str], list[str]] = {}
        while (message := await lines.get(no_ack=True, fail=False)) is not None:
            body = json.loads(message.body)
            if body["buildid"] == build_id:
                key = (body["data"]["target"], body["data"]["platform"])
                shipped.setdefault(key, []).extend(body["data"]["lines"])
        return verdicts, shipped
    finally:
        await bus.stop(grace_s=5)
        await connection.close()


def system_layer_digest(registry: RegistryClient, event) -> str:
    """The registry digest of the image's `COPY sys/ /` layer (read from the image's history)."""
    repo = event.data["repository"].split("/", 1)[1]
    _, _, manifest = registry.get_manifest(repo, event.data["digest"])
    manifest = json.loads(manifest)
    config = json.loads(registry.get_blob(repo, manifest["config"]["digest"]))
    steps = [h.get("created_by", "") for h in config["history"] if not h.get("empty_layer")]
    layers = [layer["digest"] for layer in manifest["layers"]]
    (digest,) = [d for step, d in zip(steps, layers, strict=True) if "COPY dir:" in step and " in / " in step]
    return digest


async def test_imagemagick_renders_at_start_in_the_amd64_and_arm64_images(amqp_url, setup, registry):
    jobs = [request(setup, registry, "render", platform) for platform in PLATFORMS]
    pushed, shipped = await run_jobs(amqp_url, jobs)
    assert sorted((e.type, e.data["platform"]) for e in pushed) == [
        ("dev.kiln.image.pushed.v1", platform) for platform in PLATFORMS
    ], [e.data.get("error") for e in pushed]
    for platform in PLATFORMS:
        image_lines = "\n".join(shipped[("render", platform)])
        assert "| rendered PNG 32x16 with ImageMagick" in image_lines, image_lines[-3000:]
        assert "proof passed" in image_lines
        assert "alternative /usr/bin/convert -> /usr/bin/convert-im6.q16" in image_lines  # built cold
        assert "COPY sys/ /" in image_lines
    assert all(e.data["proven"] for e in pushed)


async def test_the_same_set_through_a_tier_is_the_same_layer_and_is_not_unpacked_again(
    amqp_url, setup, registry
):
    # The first job finds the amd64 layer for {imagemagick} (the test above built it) or builds
    # it; the second service asks for the same set through its tier and must find it.
    render, _ = await run_jobs(amqp_url, [request(setup, registry, "render", "linux/amd64")])
    again, shipped = await run_jobs(amqp_url, [request(setup, registry, "render-too", "linux/amd64")])
    assert [e.type for e in render + again] == ["dev.kiln.image.pushed.v1"] * 2, render + again
    lines = "\n".join(shipped[("render-too", "linux/amd64")])
    assert "packages to unpack" not in lines and "| rendered PNG 32x16 with ImageMagick" in lines
    assert system_layer_digest(registry, again[0]) == system_layer_digest(registry, render[0])


async def test_a_package_that_does_not_exist_fails_the_image_naming_its_key(amqp_url, setup, registry):
    (failed,), _ = await run_jobs(amqp_url, [request(setup, registry, "broken", "linux/arm64")], timeout=120)
    assert failed.type == "dev.kiln.image.failed.v1"
    error = failed.data["error"]
    assert f"'kiln-no-such-package' (packages.{PACKAGE}.services.broken.system_packages)" in error, error
    assert "Unable to locate package kiln-no-such-package" in error
    repo = image_repository(registry.host, PROJECT, VERSION, "broken", PACKAGE, "linux/arm64").split("/", 1)[
        1
    ]
    with pytest.raises(NotFound):  # nothing was ever pushed there
        registry.list_tags(repo)
