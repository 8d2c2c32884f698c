"""Image jobs clean up after themselves, on the real Docker Engine and registry (issue #14).

One worker's jobs run in process (no bus: the handler's contract is tested elsewhere), with the
real builder, prover, registry and janitor. After a job the engine holds none of its images or
proof containers; with KILN_IMAGER_KEEP_PUSHED=1 the newest image of a repository stays and the
one before goes; the caches never exceed their bound; a user's container and image are untouched,
and so is a container whose image carries Kiln's proof labels (a pushed Dockerfile can write any
LABEL, and containers inherit them).
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid

import docker
import pytest
from docker.errors import ImageNotFound

from services.imager.adapters.docker_cleanup import OWNER_LABEL, PROOF_LABEL, DockerEngineCleaner
from services.imager.adapters.docker_engine import DockerEngineBuilder
from services.imager.adapters.docker_prover import DockerProver
from services.imager.cache_bound import BoundedCache
from services.imager.cleanup import CleanupPolicy, Janitor
from services.imager.image_job import ImagerDeps, JobContext, run_image_job
from services.imager.ports import RegistryAuth
from services.imager.tier_venv import TierVenvCache
from services.imager.worker_ledger import WorkerLedger
from shared.artifacts import pull_artifact, push_artifact
from shared.events import StageFinished
from shared.events.compile import Artifact, ImageRequested
from shared.naming import image_repository
from shared.registry import RegistryClient
from tests.integration.imager_support import required_env

pytestmark = pytest.mark.integration
CACHE_BOUND = 700_000  # bytes: two of the 400 kB artifacts below do not fit


@pytest.fixture
def engine():
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture
def registry():
    client = RegistryClient(
        required_env("KILN_REGISTRY_URL"),
        required_env("KILN_REGISTRY_USERNAME"),
        required_env("KILN_REGISTRY_PASSWORD"),
    )
    yield client
    client.close()


def artifact(tmp_path, name: str) -> Artifact:
    src = tmp_path / f"src-{name}"
    src.mkdir()
    base = required_env("KILN_BASE_IMAGE_AMD64")
    (src / "Dockerfile").write_text(f'FROM {base}\nCOPY app.py /srv/app.py\nCMD ["python3", "/srv/app.py"]\n')
    (src / "app.py").write_text(f"# {name}\nimport time\nwhile True:\n    time.sleep(1)\n")
    (src / "padding.bin").write_bytes(os.urandom(400_000))  # cached per digest: what the bound counts
    stored = push_artifact(
        src, store=f"file://{tmp_path / 'store'}", package="p", build=name, platform="linux/amd64"
    )
    return Artifact(platform="linux/amd64", reference=stored.reference, digest=stored.digest)


def make_deps(tmp_path, registry, engine, password: str) -> ImagerDeps:
    work = tmp_path / "work"
    ledger = WorkerLedger(work)
    ledger.claim()
    janitor = Janitor(
        DockerEngineCleaner(engine),
        ledger,
        BoundedCache([work / "tiers", work / "artifacts"], CACHE_BOUND),
        work,
        CleanupPolicy(keep_pushed=0, stale_proof_s=0),  # age 0: any proof nobody owns is stale
    )
    return ImagerDeps(
        builder=DockerEngineBuilder(engine),
        prover=DockerProver(engine, stay_up_s=1, worker_id=ledger.worker_id),
        registry=registry,
        fetch_artifact=lambda a, dest: pull_artifact(a.reference, dest),
        tiers=TierVenvCache(work / "tiers"),
        work_dir=work,
        auth=RegistryAuth(required_env("KILN_REGISTRY_USERNAME"), password),
        janitor=janitor,
    )


def run_job(deps: ImagerDeps, registry, repository: str, art: Artifact, tag: str) -> list:
    events: list = []
    job = ImageRequested(
        target="svc",
        platform="linux/amd64",
        artifact=art,
        base_image=required_env("KILN_BASE_IMAGE_AMD64"),
        dockerfile="Dockerfile",
        repository=repository,
        tags=("latest", tag),
    )
    run_image_job(job, JobContext(str(uuid.uuid4()), "p", events.append, maybe_ran_before=False), deps)
    return events


def built_image_id(events) -> str:
    (image,) = [e for e in events if isinstance(e, StageFinished) and e.stage == "image"]
    assert image.status == "succeeded", image.error
    return image.detail["image_id"]


def test_jobs_leave_no_images_or_proofs_and_caches_stay_bounded(tmp_path, engine, registry):
    base = required_env("KILN_BASE_IMAGE_AMD64")
    unique = uuid.uuid4().hex[:6]
    # A user's image and container on the same engine, and a "deployed" container of an image
    # whose Dockerfile claims Kiln's proof labels for a worker that does not exist.
    user_image = f"user-{unique}/tool:1"
    engine.api.tag(base, f"user-{unique}/tool", tag="1")
    user = engine.containers.run(user_image, ["sleep", "300"], detach=True, name=f"user-{unique}")
    forged = f'FROM {base}\nLABEL {PROOF_LABEL}=1 {OWNER_LABEL}=w{"0" * 12}\nCMD ["sleep", "300"]\n'
    forged_image = f"user-{unique}/forged:1"
    engine.images.build(fileobj=io.BytesIO(forged.encode()), tag=forged_image, rm=True)
    hostile = engine.containers.run(forged_image, detach=True, name=f"deployed-{unique}")
    deps = make_deps(tmp_path, registry, engine, required_env("KILN_REGISTRY_PASSWORD"))
    janitor = deps.janitor
    repo_once = image_repository(registry.host, "kiln", f"cu{unique}", "svc", "p", "linux/amd64")
    repo_kept = image_repository(registry.host, "kiln", f"ck{unique}", "svc", "p", "linux/amd64")
    try:
        first = built_image_id(run_job(deps, registry, repo_once, artifact(tmp_path, "b1"), "b1"))
        # keep 0: the job's tags, its image, its build steps and its proof are gone.
        assert engine.images.list(name=repo_once) == []
        with pytest.raises(ImageNotFound):
            engine.images.get(first)
        assert not engine.containers.list(
            all=True, filters={"name": f"kiln-proof-{janitor.ledger.worker_id}"}
        )
        assert janitor.cache.total_bytes() <= CACHE_BOUND

        janitor.policy.keep_pushed = 1
        second = built_image_id(run_job(deps, registry, repo_kept, artifact(tmp_path, "b2"), "b2"))
        assert {t for i in engine.images.list(name=repo_kept) for t in i.tags} == {
            f"{repo_kept}:b2",
            f"{repo_kept}:latest",
        }
        assert janitor.cache.total_bytes() <= CACHE_BOUND
        third = built_image_id(run_job(deps, registry, repo_kept, artifact(tmp_path, "b3"), "b3"))
        assert engine.images.get(third).tags  # the newest stays for a deployer on this engine
        with pytest.raises(ImageNotFound):
            engine.images.get(second)  # the one before it went, with its build steps
        assert janitor.cache.total_bytes() <= CACHE_BOUND
        assert len(janitor.cache.entries()) == 1  # LRU: the newest artifact only

        janitor.at_start()  # stale proofs by age (0 here): the forged labels do not make one
        hostile.reload()
        user.reload()
        assert hostile.status == "running" and user.status == "running"
        assert engine.images.get(user_image)
        assert list((tmp_path / "work" / "jobs").iterdir()) == []
    finally:
        for container in (user, hostile):
            if container is not None:
                container.remove(force=True)
        leftovers = [t for r in (repo_once, repo_kept) for i in engine.images.list(name=r) for t in i.tags]
        for reference in (user_image, forged_image, *leftovers):
            with contextlib.suppress(ImageNotFound):
                engine.images.remove(reference)
        deps.janitor.ledger.release()
