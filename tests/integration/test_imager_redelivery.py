"""A worker killed mid-proof: the job is redelivered to another worker, pushed once, tags unique;
the successor removes the proof container, image and scratch dir the dead worker left."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import docker
import pytest

from shared.artifacts import push_artifact
from shared.bus import Bus
from shared.events.compile import Artifact, ImageRequested
from shared.naming import image_repository
from shared.registry import RegistryClient
from tests.integration.imager_support import (
    dockerfile_operator_config,
    required_env,
    start_worker,
    stop_worker,
)
from tests.integration.test_imager_pipeline import Recorder

pytestmark = pytest.mark.integration


async def test_worker_killed_mid_proof_job_is_redelivered_pushed_once_and_its_leftovers_removed(
    amqp_url, database_url, tmp_path
):
    registry = RegistryClient(
        required_env("KILN_REGISTRY_URL"),
        required_env("KILN_REGISTRY_USERNAME"),
        required_env("KILN_REGISTRY_PASSWORD"),
    )
    src = tmp_path / "src"
    src.mkdir()
    base = required_env("KILN_BASE_IMAGE_AMD64")
    (src / "Dockerfile").write_text(f'FROM {base}\nCOPY app.py /srv/app.py\nCMD ["python3", "/srv/app.py"]\n')
    (src / "app.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    store = f"file://{tmp_path / 'store'}"
    stored = push_artifact(src, store=store, package="p", build="b1", platform="linux/amd64")
    repository = image_repository(
        registry.host, "kiln", f"kill{uuid.uuid4().hex[:6]}", "svc", "p", "linux/amd64"
    )
    repo = repository.split("/", 1)[1]
    job = ImageRequested(
        target="svc",
        platform="linux/amd64",
        artifact=Artifact(platform="linux/amd64", reference=stored.reference, digest=stored.digest),
        base_image=required_env("KILN_BASE_IMAGE_AMD64"),
        dockerfile="Dockerfile",
        repository=repository,
        tags=("latest", "b1"),
    )
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_IMAGER_WORK_DIR": str(tmp_path / "work"),
        "KILN_CONFIG_PATH": str(
            dockerfile_operator_config(tmp_path / "operator", "p", registry.host, {"linux/amd64": base})
        ),
        "KILN_ARTIFACT_STORE": store,
        "KILN_PROVE_STAY_UP_S": "4",  # long enough to be killed inside it
        "KILN_IMAGER_KEEP_PUSHED": "0",  # nothing of the job may stay in the engine
    }
    engine = docker.from_env(timeout=60)
    bus = await Bus(amqp_url, source="test").connect()
    recorder = Recorder()
    await bus.subscribe_transient("imager-kill", ["#"], recorder)
    first = start_worker("linux/amd64", env, tmp_path / "first.log", "--no-manifests")
    second = None
    try:
        await asyncio.sleep(3)  # let it start consuming
        build_id = str(uuid.uuid4())
        await bus.emit(job, build_id=build_id, package="p")
        await recorder.wait(".stage.started.v1", build_id, 1, timeout=60)
        (dead_id,) = [lock.stem for lock in (tmp_path / "work" / "workers").glob("*.lock")]
        proofs = {"name": f"kiln-proof-{dead_id}"}
        await _until(lambda: engine.containers.list(filters=proofs), "the first worker's proof")
        first.kill()  # SIGKILL mid-proof: no ack, no graceful stop, its proof container stays
        first.wait(timeout=10)
        assert not recorder.of(".image.pushed.v1", build_id)
        assert engine.containers.list(all=True, filters=proofs), "the leak this test proves fixed"
        second = start_worker("linux/amd64", env, tmp_path / "second.log", "--no-manifests")
        (pushed,) = await recorder.wait(".image.pushed.v1", build_id, 1, timeout=90)
        await asyncio.sleep(2)
        assert len(recorder.of(".image.pushed.v1", build_id)) == 1
        assert sorted(registry.list_tags(repo)) == ["b1", "latest"]
        assert registry.manifest_digest(repo, "latest") == pushed.data["digest"]
        # The successor removed what the dead worker left: its proof container, its scratch dir,
        # its lock and ledger; and after its own push, the job's images (keep 0).
        assert not engine.containers.list(all=True, filters=proofs)
        assert not list(Path(tmp_path / "work" / "jobs").glob(f"{dead_id}-*"))
        assert not list((tmp_path / "work" / "workers").glob(f"{dead_id}.*"))
        assert engine.images.list(name=repository) == []
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            stop_worker(second)
        await bus.stop(grace_s=5)
        registry.close()
        for container in engine.containers.list(all=True, filters={"label": "dev.kiln.proof"}):
            if container.name.startswith("kiln-proof-") and container.image.tags[:1] == [f"{repository}:b1"]:
                container.remove(force=True)  # only if the test failed before the successor did it
        engine.close()


async def _until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        await asyncio.sleep(0.2)
