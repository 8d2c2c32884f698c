"""One image worker runs KILN_IMAGER_CONCURRENCY jobs at once (issue #17): while one image is
being proven (mostly waiting), the next is built and proven beside it; and an image whose content
was proven before is not proven again. Real worker process, RabbitMQ, Docker Engine and registry;
each job's proof lasts 4 s, so two in series would need 8."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid

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

TARGETS = ("one", "two")
PROOF_S = 4.0


def _at(event) -> dt.datetime:
    return event.time if isinstance(event.time, dt.datetime) else dt.datetime.fromisoformat(event.time)


def _image_stage(recorder: Recorder, build_id: str, suffix: str, target: str):
    (event,) = [
        e
        for e in recorder.of(suffix, build_id)
        if e.data.get("stage") == "image" and e.data.get("target") == target
    ]
    return event


async def test_a_worker_with_concurrency_two_proves_two_images_side_by_side(amqp_url, database_url, tmp_path):
    registry = RegistryClient(
        required_env("KILN_REGISTRY_URL"),
        required_env("KILN_REGISTRY_USERNAME"),
        required_env("KILN_REGISTRY_PASSWORD"),
    )
    base = required_env("KILN_BASE_IMAGE_AMD64")
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(f'FROM {base}\nCOPY app.py /srv/app.py\nCMD ["python3", "/srv/app.py"]\n')
    (src / "app.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    store = f"file://{tmp_path / 'store'}"
    stored = push_artifact(src, store=store, package="p", build="b1", platform="linux/amd64")
    version = f"conc{uuid.uuid4().hex[:6]}"
    env = {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_IMAGER_WORK_DIR": str(tmp_path / "work"),
        "KILN_CONFIG_PATH": str(
            dockerfile_operator_config(
                tmp_path / "operator", "p", registry.host, {"linux/amd64": base}, services=TARGETS
            )
        ),
        "KILN_ARTIFACT_STORE": store,
        "KILN_PROVE_STAY_UP_S": str(PROOF_S),
        "KILN_IMAGER_CONCURRENCY": "2",
        "KILN_IMAGER_KEEP_PUSHED": "0",
    }
    bus = await Bus(amqp_url, source="test").connect()
    recorder = Recorder()
    await bus.subscribe_transient("imager-concurrency", ["#"], recorder)
    worker = start_worker("linux/amd64", env, tmp_path / "worker.log", "--no-manifests")
    build_id = str(uuid.uuid4())

    async def request_both(build: str, tag: str) -> None:
        for target in TARGETS:
            job = ImageRequested(
                target=target,
                platform="linux/amd64",
                artifact=Artifact(platform="linux/amd64", reference=stored.reference, digest=stored.digest),
                base_image=base,
                dockerfile="Dockerfile",
                repository=image_repository(registry.host, "kiln", version, target, "p", "linux/amd64"),
                tags=(tag,),
            )
            await bus.emit(job, build_id=build, package="p")

    try:
        await asyncio.sleep(3)  # let it start consuming
        await request_both(build_id, "b1")
        pushed = await recorder.wait(".image.pushed.v1", build_id, 2, timeout=120)
        assert sorted(e.data["target"] for e in pushed) == list(TARGETS)
        started = {t: _at(_image_stage(recorder, build_id, ".stage.started.v1", t)) for t in TARGETS}
        finished = {t: _at(_image_stage(recorder, build_id, ".stage.finished.v1", t)) for t in TARGETS}
        first, second = sorted(TARGETS, key=started.get)
        # Side by side: the second job started before the first one's proof could have ended.
        assert started[second] < finished[first], (started, finished)
        assert (max(finished.values()) - min(started.values())).total_seconds() < 2 * PROOF_S + 2
        assert all(
            _image_stage(recorder, build_id, ".stage.finished.v1", t).data["detail"]["proof"] for t in TARGETS
        )

        # The next build of the same content: built again (cache hits), pushed, not proven again.
        again = str(uuid.uuid4())
        await request_both(again, "b2")
        await recorder.wait(".image.pushed.v1", again, 2, timeout=60)
        for target in TARGETS:
            proof = _image_stage(recorder, again, ".stage.finished.v1", target).data["detail"]["proof"]
            assert "proven before" in proof, proof
    finally:
        stop_worker(worker)
        await bus.stop(grace_s=5)
        registry.close()


def _arm64_image(tag: str, program: str) -> str:
    """A tiny arm64 image running `program` (built without QEMU: a COPY-free Dockerfile)."""
    import io
    import tarfile

    import docker

    dockerfile = (
        f"FROM {required_env('KILN_BASE_IMAGE_ARM64')}\nCMD {json.dumps(['python3', '-c', program])}\n"
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile.encode())
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    client = docker.from_env()
    reference = f"kiln-test-settle:{tag}"
    for _ in client.api.build(
        fileobj=io.BytesIO(context.getvalue()),
        custom_context=True,
        tag=reference,
        platform="linux/arm64",
        decode=True,
    ):
        pass
    return reference


def test_an_emulated_worker_passes_once_its_start_up_settled_a_busy_one_keeps_the_long_window():
    """Under QEMU the stay-up window is 4 x 3 s; a worker whose CPU use settled has shown what the
    window is for (its imports ran, it keeps running) after 3 s more. A busy one gets the 12 s."""
    from services.imager.adapters.docker_prover import DockerProver

    prover = DockerProver(stay_up_s=3.0, timeout_s=30.0, emulated_factor=4.0, host_platform="linux/amd64")
    idle = _arm64_image("idle", "import json, email, http.client, asyncio, time\nwhile True: time.sleep(1)")
    started = time.monotonic()
    proof = prover.prove(idle, platform="linux/arm64", port=None, health_path=None)
    assert proof.ok and "after its start-up settled" in proof.reason, proof.reason
    assert time.monotonic() - started < 12
    busy = _arm64_image("busy", "while True: pass")
    proof = prover.prove(busy, platform="linux/arm64", port=None, health_path=None)
    assert proof.ok and proof.reason == "still running after 12s", proof.reason
    crash = _arm64_image("crash", "import time; import missing_factory_module")
    proof = prover.prove(crash, platform="linux/arm64", port=None, health_path=None)
    assert not proof.ok and "missing_factory_module" in proof.reason, proof.reason
