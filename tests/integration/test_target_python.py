"""Compiling for the Python of the base image, proven for two CPythons on both platforms: Debian
bookworm's 3.11 and trixie's 3.13 (base and headers images built by ./kiln-dev test).

The compiler service runs on a real RabbitMQ vhost and MariaDB and reads each base image from
the dev registry (nothing pulled, nothing run); the imager builds each service image with a tier
holding a binary wheel (orjson) for that Python and platform, proves it starts (arm64 under
QEMU), and the image then imports its compiled module: the module suffixes, the interpreter and
the wheel's ABI all match. Bad input fails stage compile naming the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from services.compiler.base_python.reader import BaseImage, BasePythonError
from services.compiler.bootstrap import base_pythons_from, bootstrap
from services.compiler.settings import CompilerSettings
from services.imager.bootstrap import make_builder, make_prover
from services.imager.image_job import ImagerDeps, JobContext, run_image_job
from services.imager.ports import RegistryAuth
from services.imager.settings import ImagerSettings
from services.imager.tier_venv import TierVenvCache
from shared.artifacts import pull_artifact
from shared.bus import Bus
from shared.bus import topology as t
from shared.config import generate_keys
from shared.events import BuildRequested, ImageRequested, StageFinished
from shared.events.build import Options, Source
from shared.registry import RegistryClient
from tests.integration.imager_support import required_env

pytestmark = pytest.mark.integration

PLATFORMS = ("linux/amd64", "linux/arm64")
TRIPLETS = {"linux/amd64": "x86_64-linux-gnu", "linux/arm64": "aarch64-linux-gnu"}
SUITES = {"bookworm": "3.11", "trixie": "3.13"}
PACKAGE = "pyver"
APP = """\
import sys
import time

import orjson


def facts() -> bytes:
    python = list(sys.version_info[:2])
    return orjson.dumps({"python": python, "module": __file__, "orjson": orjson.orjson.__file__})


def main() -> None:  # what Kiln's launcher calls in a compiled module
    print(facts().decode(), flush=True)
    while True:
        time.sleep(1)
"""


def base_image(suite: str, platform: str) -> str:
    arch = platform.split("/")[1]
    if suite == "bookworm":
        return required_env(f"KILN_BASE_IMAGE_{arch.upper()}")
    return f"{required_env('KILN_REGISTRY_URL')}/kiln/base:{suite}-{arch}"


def headers_images(platform: str) -> str:
    name = f"KILN_PYTHON_HEADERS_IMAGES_{platform.split('/')[1].upper()}"
    value = os.environ.get(name, "")
    if "trixie" not in value:
        pytest.fail(f"{name} names no trixie headers image: run ./kiln-dev test (it builds trixie's images)")
    return value


def operator_config(directory: Path, tree: Path, keys: Path, registry: str, bases: dict[str, str]) -> Path:
    lines = ", ".join(f'{platform}: "{image}"' for platform, image in bases.items())
    path = directory / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        f"""
version_map: {{"*": prism}}
factories: {{app: {{path: app}}}}
tiers: {{json: {{requirements: [requirements/json.txt]}}}}
packages:
  {PACKAGE}:
    factories: [app]
    keys: {{dir: {keys}}}
    services:
      app: {{command: [python3, -m, app.main], tier: json, factories: [app]}}
    deployment:
      platforms: [linux/amd64, linux/arm64]
      registry: {{type: registry, host: "{registry}"}}
      base_images: {{{lines}}}
    webhooks: {{clone_url: "{tree}", allow_file: true}}
"""
    )
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pyver")
    tree = root / "repo"
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "__init__.py").write_text("")
    (tree / "app" / "main.py").write_text(APP)
    (tree / "requirements").mkdir()
    (tree / "requirements" / "json.txt").write_text("orjson==3.13.0\n")
    generate_keys(root / "keys", PACKAGE)
    return {"root": root, "tree": tree, "keys": root / "keys", "cache": root / "compile-cache"}


@pytest.fixture(scope="module")
async def compiler(amqp_url, database_url, work):
    """One compiler service for the module; each test's operator config is the file it points at."""
    config = work["root"] / "operator" / "config.yaml"  # its directory may not hold the keys
    config.parent.mkdir()
    settings = CompilerSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        config_path=str(config),
        compiler_cache=str(work["cache"]),
        compiler_python_cache=str(work["root"] / "base-python"),
        artifact_store=f"file://{work['root'] / 'artifacts'}",
        work_dir=str(work["root"]),
        python_headers_images_amd64=headers_images("linux/amd64"),
        python_headers_images_arm64=headers_images("linux/arm64"),
        instance=f"test-{uuid.uuid4().hex[:6]}",
    )
    service = bootstrap(settings, environ={})
    bus = await service.bus().connect()
    await service.start(bus)
    yield config
    await bus.stop(grace_s=60)


@pytest.fixture(scope="module")
async def events(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    for key in ("stage.finished", "image.requested.*", "build.finished"):
        await queue.bind(exchange, key)
    yield queue
    await connection.close()


async def build(amqp_url, queue, config: Path, source: Path, bases: dict[str, str]) -> list[tuple[str, dict]]:
    """One build of the package for `bases`; its events until the images are requested or it ends."""
    registry = required_env("KILN_REGISTRY_URL")
    written = operator_config(config.parent, source, config.parent.parent / "keys", registry, bases)
    written.replace(config)  # read per build by stage config
    build_id = str(uuid.uuid4())
    bus = await Bus(amqp_url, source="gateway").connect()
    try:
        request = BuildRequested(
            package=PACKAGE, source=Source(path=str(source)), options=Options(skip_push=True)
        )
        await bus.emit(request, build_id=build_id, package=PACKAGE)
    finally:
        await bus.stop(grace_s=5)
    got: list[tuple[str, dict]] = []
    deadline = asyncio.get_running_loop().time() + 240
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        body = json.loads(message.body)
        if body["buildid"] == build_id:
            got.append((message.routing_key, body))
            requested = sum(key.startswith("image.requested.") for key, _ in got)
            if requested == len(bases) or message.routing_key == "build.finished":
                return got
    raise AssertionError(f"build {build_id} did not finish; got {[k for k, _ in got]}")


def stage(events, name: str) -> dict:
    finished = [b["data"] for k, b in events if k == "stage.finished"]
    found = [data for data in finished if data["stage"] == name]
    assert found, f"no stage {name} finished: {[(d['stage'], d['status'], d.get('error')) for d in finished]}"
    return found[0]


@pytest.fixture(scope="module")
def imager(work) -> Iterator[ImagerDeps]:
    """The imager's real builder, prover and tier cache, as its bootstrap wires them (without its
    process-wide logging set-up); no janitor, so the image stays for the test to run and remove."""
    settings = ImagerSettings(imager_work_dir=work["root"] / "imager", prove_stay_up_s=2, config_path=None)
    registry = RegistryClient.from_settings(settings)
    yield ImagerDeps(
        builder=make_builder(settings),
        prover=make_prover(settings),
        registry=registry,
        fetch_artifact=lambda artifact, dest: pull_artifact(artifact.reference, dest),
        tiers=TierVenvCache(settings.imager_work_dir / "tiers"),
        work_dir=settings.imager_work_dir,
        auth=RegistryAuth(None, None),  # nothing is pushed
    )
    registry.close()


def image_and_facts(request: dict, deps) -> tuple[StageFinished, dict]:
    """The imager's job for the request (build + start-up proof, no push), then the image's own
    account of its Python, its compiled module and its wheel."""
    emitted: list = []
    job = JobContext(
        build_id=request["buildid"], package=PACKAGE, emit=emitted.append, maybe_ran_before=False
    )
    event = ImageRequested.model_validate(request["data"])
    run_image_job(event, job, deps)
    imaged = next(e for e in emitted if isinstance(e, StageFinished) and e.stage == "image")
    reference = f"{event.repository}:latest"
    probe = "import json, app.main; print(app.main.facts().decode())"
    ran = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--platform",
            event.platform,
            "--network",
            "none",
            reference,
            "python3",
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    subprocess.run(["docker", "rmi", "-f", reference], capture_output=True, timeout=60)
    assert ran.returncode == 0, ran.stderr[-2000:]
    return imaged, json.loads(ran.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("suite", list(SUITES))
async def test_a_package_is_compiled_and_imaged_for_the_python_of_its_base_image(
    amqp_url, compiler, events, work, imager, suite
):
    version = SUITES[suite]
    nodot = version.replace(".", "")
    bases = {platform: base_image(suite, platform) for platform in PLATFORMS}
    got = await build(amqp_url, events, compiler, work["tree"], bases)
    compiled = stage(got, "compile")
    assert compiled["status"] == "succeeded", compiled.get("error")
    assert compiled["detail"]["python"] == {p: f"cpython-{nodot}-{TRIPLETS[p]}" for p in PLATFORMS}
    requests = [body for key, body in got if key.startswith("image.requested.")]
    assert {r["data"]["platform"] for r in requests} == set(PLATFORMS)
    for request in requests:
        platform = request["data"]["platform"]
        suffix = f".cpython-{nodot}-{TRIPLETS[platform]}.so"
        tree = pull_artifact(
            request["data"]["artifact"]["reference"], work["root"] / f"pulled-{suite}-{platform[6:]}"
        )
        assert sorted(p.name for p in (tree / "app").iterdir()) == [
            "_COMPILED",
            "__init__.py",
            f"main{suffix}",
        ]
        manifest = json.loads((tree / ".kiln-compile.json").read_text())
        assert (manifest["python_version"], manifest["abi"]) == (version, f"cp{nodot}")

        imaged, facts = await asyncio.to_thread(image_and_facts, request, imager)
        assert imaged.status == "succeeded", (imaged.error, imaged.log_tail)  # the start-up proof
        assert facts["python"] == [int(part) for part in version.split(".")]
        assert facts["module"] == f"/app/app/main{suffix}"  # the compiled module, not a .py
        assert facts["orjson"].endswith(suffix)  # the tier's binary wheel is this Python's


async def test_a_base_image_without_python_fails_stage_compile_naming_its_key(
    amqp_url, compiler, events, work
):
    no_python = f"{required_env('KILN_REGISTRY_URL')}/kiln/python-headers:trixie-amd64"  # headers only
    bases = {"linux/amd64": no_python, "linux/arm64": base_image("bookworm", "linux/arm64")}
    got = await build(amqp_url, events, compiler, work["tree"], bases)
    failed = stage(got, "compile")
    assert failed["status"] == "failed"
    assert failed["error"].startswith(
        f"packages.{PACKAGE}.deployment.base_images.linux/amd64: base image {no_python} (linux/amd64) has no "
        "Python Kiln's images could run: no python3 on its PATH"
    )
    assert not any(key.startswith("image.requested.") for key, _ in got)
    end = next(b["data"] for k, b in got if k == "build.finished")
    assert (end["status"], end["failed_stage"]) == ("failed", "compile")


def test_a_python_without_headers_anywhere_is_refused_naming_what_to_set(work):
    """Trixie's python3 has no headers, and without KILN_PYTHON_HEADERS_IMAGES_ARM64 nothing else
    has CPython 3.13's for arm64 (the host has 3.11's)."""
    settings = CompilerSettings(
        compiler_python_cache=str(work["root"] / "base-python"),
        config_path="unused",
        python_headers_images_arm64="",  # whatever the environment says
    )
    reader = base_pythons_from(settings)
    trixie = base_image("trixie", "linux/arm64")
    with (
        pytest.raises(BasePythonError) as refused,
        reader.held({"linux/arm64": BaseImage("linux/arm64", trixie, "KILN_BASE_IMAGE_ARM64")}),
    ):
        pass
    message = str(refused.value)
    assert message.startswith(f"KILN_BASE_IMAGE_ARM64: base image {trixie} (linux/arm64) has Python 3.13")
    assert "Set KILN_PYTHON_HEADERS_IMAGES_ARM64 to an image holding include/python3.13" in message
    assert "libpython3.13-dev:arm64" in message and "python:3.13-slim" in message
