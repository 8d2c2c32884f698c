"""The compiler as a running service on a real RabbitMQ vhost and MariaDB database, with the
real compile engine (amd64 + arm64 cross) and artifacts in a `file://` store (one test pushes
to the dev registry): build.requested -> stage events, compile.completed, image.requested.<arch>.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import aio_pika
import pytest
import yaml

from services.compiler.bootstrap import bootstrap
from services.compiler.settings import CompilerSettings
from shared.artifacts import pull_artifact
from shared.bus import Bus
from shared.bus import topology as t
from shared.config import generate_keys
from shared.events import BuildRequested
from shared.events.build import Source
from shared.registry import RegistryClient
from tests.integration.imager_support import required_env

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "monorepo"
OPERATOR_CONFIG = EXAMPLE.parent / "operator" / "config.yaml"
SERVICES = ("report", "scheduler", "storage-worker", "webhook")


def bases() -> dict[str, str]:
    """The dev registry's base images (.kiln/dev.env): stage compile reads each one's Python."""
    return {
        f"base_image_{arch}": required_env(f"KILN_BASE_IMAGE_{arch.upper()}") for arch in ("amd64", "arm64")
    }


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> Path:
    """Shared by the module's builds: the first compiles, the rest mostly hit the cache."""
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture
def monorepo(tmp_path) -> Path:
    """A copy of the example with keys made now, in a directory outside it (KILN_KEYS_DIR)."""
    root = tmp_path / "monorepo"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".ruff_cache", "__pycache__", "tests"))
    generate_keys(tmp_path / "keys", "demo")
    return root


def local_source(path: Path) -> dict[str, str]:
    """Config overrides that make the directory `path` the package's configured source (as the dev
    stack's example repository is): a build.requested may name only that directory."""
    return {"KILN_WEBHOOKS_CLONE_URL": str(path), "KILN_WEBHOOKS_ALLOW_FILE": "true"}


async def start_service(amqp_url, database_url, tmp_path, compile_cache, **overrides):
    values = {
        "amqp_url": amqp_url,
        "database_url": database_url,
        "compiler_cache": str(compile_cache),
        "artifact_store": f"file://{tmp_path / 'artifacts'}",
        "work_dir": str(tmp_path),
        "config_path": str(OPERATOR_CONFIG),
        "instance": f"test-{uuid.uuid4().hex[:6]}",
        **bases(),
    }
    settings = CompilerSettings(**{**values, **overrides})
    environ = {"KILN_KEYS_DIR": str(tmp_path / "keys")}
    if "config_path" not in overrides:  # the example's operator config, built from the monorepo fixture
        environ |= local_source(tmp_path / "monorepo")
    service = bootstrap(settings, environ=environ)
    bus = await service.bus().connect()
    await service.start(bus)
    return bus


@pytest.fixture
async def compiler_bus(amqp_url, database_url, tmp_path, compile_cache):
    bus = await start_service(amqp_url, database_url, tmp_path, compile_cache)
    yield bus
    await bus.stop(grace_s=60)


@pytest.fixture
async def observer(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    for key in ("stage.#", "compile.completed", "image.requested.*", "build.finished"):
        await queue.bind(exchange, key)
    yield queue
    await connection.close()


async def request(amqp_url: str, source: Source) -> str:
    build_id = str(uuid.uuid4())
    bus = await Bus(amqp_url, source="gateway").connect()
    try:
        await bus.emit(BuildRequested(package="demo", source=source), build_id=build_id, package="demo")
    finally:
        await bus.stop(grace_s=5)
    return build_id


async def collect(queue, build_id: str, done, timeout: float = 150) -> list[tuple[str, dict]]:
    """(routing key, body) of the build's events until `done(events)` is true."""
    got: list[tuple[str, dict]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        body = json.loads(message.body)
        if body["buildid"] == build_id:
            got.append((message.routing_key, body))
            if done(got):
                return got
    raise AssertionError(f"build {build_id} did not finish within {timeout}s; got {[k for k, _ in got]}")


def all_images(events) -> bool:
    return sum(key.startswith("image.requested.") for key, _ in events) == 2 * len(SERVICES)


def finished(events) -> bool:
    return any(key == "build.finished" for key, _ in events)


def stage(events, name: str) -> dict:
    return next(b["data"] for k, b in events if k == "stage.finished" and b["data"]["stage"] == name)


def check_success(events) -> dict:
    assert [stage(events, s)["status"] for s in ("config", "keys", "compile")] == ["succeeded"] * 3
    completed = next(b["data"] for k, b in events if k == "compile.completed")
    assert completed["ok"] is True
    assert {a["platform"] for a in completed["artifacts"]} == {"linux/amd64", "linux/arm64"}
    assert len(completed["targets"]) == 2 * len(SERVICES)
    requested = {(b["data"]["target"], k) for k, b in events if k.startswith("image.requested.")}
    assert requested == {(s, f"image.requested.{a}") for s in SERVICES for a in ("amd64", "arm64")}
    assert not finished(events)
    return completed


async def test_a_build_from_a_path_compiles_both_platforms_and_requests_every_image(
    compiler_bus, observer, amqp_url, monorepo, tmp_path
):
    build_id = await request(amqp_url, Source(path=str(monorepo)))
    events = await collect(observer, build_id, all_images)
    completed = check_success(events)
    assert {m["platform"] for m in completed["modules"]} == {"linux/amd64", "linux/arm64"}
    arm = next(
        b["data"] for k, b in events if k == "image.requested.arm64" and b["data"]["target"] == "webhook"
    )
    assert arm["repository"] == "127.0.0.1:5000/kiln/prism-webhook-demo-arm"
    assert arm["base_image"] == bases()["base_image_arm64"]
    pulled = pull_artifact(arm["artifact"]["reference"], tmp_path / "pulled")
    assert (pulled / "webhook" / "_COMPILED").is_file()
    assert list((pulled / "webhook").glob("server.cpython-311-aarch64-linux-gnu.so"))
    tiers = json.loads((pulled / ".kiln-tiers.json").read_text())
    assert set(tiers) == {"minimal", "report"}
    assert (pulled / "requirements" / "minimal.txt").is_file()


async def test_a_broken_module_fails_the_compile_with_file_and_line(
    compiler_bus, observer, amqp_url, monorepo
):
    (monorepo / "core" / "broken.py").write_text("def ok():\n    return 1\n\ndef bad(:\n    pass\n")
    build_id = await request(amqp_url, Source(path=str(monorepo)))
    events = await collect(observer, build_id, finished)
    completed = next(b["data"] for k, b in events if k == "compile.completed")
    assert completed["ok"] is False
    broken = [m for m in completed["modules"] if m["status"] == "error"]
    assert {(m["file"], m["line"]) for m in broken} == {("core/broken.py", 4)}
    assert "core/broken.py:4" in stage(events, "compile")["error"]
    end = next(b["data"] for k, b in events if k == "build.finished")
    assert (end["status"], end["failed_stage"]) == ("failed", "compile")
    assert not any(k.startswith("image.requested") for k, _ in events)


async def test_missing_keys_and_a_planted_key_fail_stage_keys(
    compiler_bus, observer, amqp_url, monorepo, tmp_path
):
    shutil.rmtree(tmp_path / "keys")
    build_id = await request(amqp_url, Source(path=str(monorepo)))
    events = await collect(observer, build_id, finished)
    error = stage(events, "keys")["error"]
    assert str(tmp_path / "keys" / "demo_private.pem") in error
    assert str(tmp_path / "keys" / "demo_public.pem") in error

    generate_keys(tmp_path / "keys", "demo")
    (monorepo / "storage" / "id_rsa").write_text("planted\n")
    build_id = await request(amqp_url, Source(path=str(monorepo)))
    events = await collect(observer, build_id, finished)
    keys = stage(events, "keys")
    assert keys["status"] == "failed" and keys["detail"]["credential_files"] == ["storage/id_rsa"]
    assert next(b["data"] for k, b in events if k == "build.finished")["failed_stage"] == "keys"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


async def test_a_clone_from_a_bare_repository_at_a_commit(
    amqp_url, database_url, compile_cache, observer, monorepo, tmp_path
):
    git("init", "-q", "-b", "main", cwd=monorepo)
    git("add", ".", cwd=monorepo)
    git("-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "-qm", "one", cwd=monorepo)
    commit = git("rev-parse", "HEAD", cwd=monorepo)
    (monorepo / "core" / "later.py").write_text("this is not python(\n")  # after the pushed commit
    git("add", ".", cwd=monorepo)
    git("-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "-qm", "two", cwd=monorepo)
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(monorepo), str(bare), cwd=tmp_path)
    # The compiler fetches only the package's configured source (the operator's config): here the
    # bare repository, a local path the operator allows (allow_file).
    raw = yaml.safe_load(OPERATOR_CONFIG.read_text())
    raw["packages"]["demo"]["webhooks"] = {"clone_url": f"file://{bare}", "allow_file": True}
    operator = tmp_path / "operator" / "config.yaml"
    operator.parent.mkdir()
    operator.write_text(yaml.safe_dump(raw))
    bus = await start_service(amqp_url, database_url, tmp_path, compile_cache, config_path=str(operator))
    try:
        source = Source(repo_url=f"file://{bare}", ref="refs/heads/main", commit=commit)
        build_id = await request(amqp_url, source)
        events = await collect(observer, build_id, lambda e: all_images(e) or finished(e))
        check_success(events)
        webhook = next(
            b["data"] for k, b in events if k == "image.requested.amd64" and b["data"]["target"] == "webhook"
        )
        assert webhook["repository"] == "127.0.0.1:5000/kiln/axion-webhook-demo"

        build_id = await request(amqp_url, Source(repo_url=f"file://{tmp_path}/missing.git", commit=commit))
        events = await collect(observer, build_id, finished)
        assert "which is not its configured source" in stage(events, "config")["error"]
    finally:
        await bus.stop(grace_s=60)


async def test_artifacts_pushed_to_the_dev_registry(
    amqp_url, database_url, observer, monorepo, tmp_path, compile_cache
):
    names = ("KILN_REGISTRY_URL", "KILN_REGISTRY_USERNAME", "KILN_REGISTRY_PASSWORD")
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run ./kiln-dev services; source .kiln/dev.env")
    bus = await start_service(
        amqp_url,
        database_url,
        tmp_path,
        compile_cache,
        artifact_store=None,
        registry_url=os.environ["KILN_REGISTRY_URL"],
        registry_username=os.environ["KILN_REGISTRY_USERNAME"],
        registry_password=os.environ["KILN_REGISTRY_PASSWORD"],
    )
    try:
        build_id = await request(amqp_url, Source(path=str(monorepo)))
        events = await collect(observer, build_id, lambda e: all_images(e) or finished(e))
    finally:
        await bus.stop(grace_s=60)
    completed = check_success(events)
    amd = next(a for a in completed["artifacts"] if a["platform"] == "linux/amd64")
    assert amd["reference"].startswith(f"{os.environ['KILN_REGISTRY_URL']}/kiln/kiln-artifacts/demo@sha256:")
    client = RegistryClient(
        os.environ["KILN_REGISTRY_URL"],
        os.environ["KILN_REGISTRY_USERNAME"],
        os.environ["KILN_REGISTRY_PASSWORD"],
    )
    with client:
        pulled = pull_artifact(amd["reference"], tmp_path / "pulled", client=client)
    assert (pulled / "core" / "_COMPILED").is_file()
    assert (pulled / ".kiln-tiers.json").is_file()
