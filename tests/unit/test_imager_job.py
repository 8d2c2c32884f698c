"""run_image_job's contract with fakes: never `latest` unless proven, build tag first, redelivery
answered from the registry, cancellation at stage boundaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from services.imager.image_job import LABEL_BUILD_ID, ImagerDeps, JobContext, run_image_job
from services.imager.ports import BuiltImage, ProofResult, PushResult, RegistryAuth
from services.imager.tier_venv import TierVenvCache
from shared.events.compile import Artifact, ImageRequested
from shared.registry import NotFound


class FakeBuilder:
    def __init__(self):
        self.built, self.pushed = [], []

    def build(self, context_tar, reference, *, platform, dockerfile="Dockerfile", progress=None):
        self.built.append(reference)
        return BuiltImage(image_id="sha256:img", reference=reference, size_bytes=10)

    def tag(self, image_id, reference):
        pass

    def push(self, reference, auth, *, progress=None):
        self.pushed.append(reference)
        return PushResult(digest="sha256:" + "a" * 64, size_bytes=1)

    def remove(self, reference):
        pass


class FakeProver:
    def __init__(self, result):
        self.result = result

    def prove(self, reference, *, platform, port, health_path):
        return self.result


class FakeRegistry:
    host = "reg:5000"

    def __init__(self, labels=None):
        self.labels = labels

    def get_manifest(self, repo, ref):
        if self.labels is None:
            raise NotFound("no such tag")
        return "m", "sha256:" + "b" * 64, json.dumps({"config": {"digest": "sha256:c"}}).encode()

    def get_blob(self, repo, digest):
        return json.dumps({"config": {"Labels": self.labels}}).encode()

    def image_size(self, repo, ref):
        return 1234


def make_deps(tmp_path: Path, prover_result, registry=None, cancelled=False):
    def fetch(artifact, dest):
        (dest / "core").mkdir(parents=True)
        (dest / "core" / "__init__.so").write_bytes(b"x")
        return dest

    builder = FakeBuilder()
    deps = ImagerDeps(
        builder=builder,
        prover=FakeProver(prover_result),
        registry=registry or FakeRegistry(),
        fetch_artifact=fetch,
        tiers=TierVenvCache(tmp_path / "tiers"),
        work_dir=tmp_path / "work",
        auth=RegistryAuth("u", "p"),
        is_cancelled=lambda _b, _attempt: cancelled,
    )
    return deps, builder


def job() -> ImageRequested:
    return ImageRequested(
        target="scheduler",
        platform="linux/amd64",
        artifact=Artifact(platform="linux/amd64", reference="file:///x@sha256:" + "d" * 64),
        base_image="kiln-base:bookworm-amd64",
        factories=("core",),
        command=("python3", "-m", "core.scheduler"),
        repository="reg:5000/kiln/axion-scheduler-demo",
        tags=("latest", "b3"),
    )


def run(deps):
    emitted = []
    run_image_job(job(), JobContext("build-1", "demo", emitted.append), deps)
    return [
        type(e).__name__ + ":" + getattr(e, "stage", "") + ":" + getattr(e, "status", "") for e in emitted
    ], emitted


def test_proven_image_pushes_build_tag_then_latest(tmp_path):
    deps, builder = make_deps(tmp_path, ProofResult(ok=True, reason="up"))
    names, emitted = run(deps)
    assert builder.pushed == [
        "reg:5000/kiln/axion-scheduler-demo:b3",
        "reg:5000/kiln/axion-scheduler-demo:latest",
    ]
    assert names[-1] == "ImagePushed::" and emitted[-1].size_bytes == 1234 and emitted[-1].tag == "b3"
    assert "StageFinished:push:succeeded" in names


def test_image_that_does_not_start_is_never_pushed(tmp_path):
    proof = ProofResult(ok=False, reason="missing factory: x imports y", log=["token=abcdefghijkl", "boom"])
    deps, builder = make_deps(tmp_path, proof)
    names, emitted = run(deps)
    assert builder.pushed == []
    failed = next(e for e in emitted if type(e).__name__ == "ImageFailed")
    assert "x imports y" in failed.error and "abcdefghijkl" not in " ".join(failed.log_tail)
    assert "StageFinished:image:failed" in names


def test_job_failure_names_the_factory_the_proof_missed(tmp_path):
    proof = ProofResult(ok=False, reason="missing factory: x.main imports y", missing="y", log=["boom"])
    deps, _ = make_deps(tmp_path, proof)
    _, emitted = run(deps)
    failed = next(e for e in emitted if type(e).__name__ == "ImageFailed")
    assert "x.main imports y" in failed.error and "if y is a factory of the monorepo" in failed.error


def test_redelivered_job_already_pushed_by_this_build_is_answered_without_building(tmp_path):
    deps, builder = make_deps(
        tmp_path, ProofResult(ok=True), FakeRegistry(labels={LABEL_BUILD_ID: "build-1"})
    )
    names, _ = run(deps)
    assert builder.built == [] and names == ["ImagePushed::"]


def test_first_delivery_builds_without_asking_the_registry_first(tmp_path):
    class NoLookups(FakeRegistry):
        def get_manifest(self, repo, ref):
            raise AssertionError("a first delivery cannot find its own image: no registry round trip")

    deps, builder = make_deps(tmp_path, ProofResult(ok=True), NoLookups())
    emitted = []
    run_image_job(job(), JobContext("build-1", "demo", emitted.append, maybe_ran_before=False), deps)
    assert builder.pushed and type(emitted[0]).__name__ == "StageStarted"


def test_same_tag_from_another_build_is_rebuilt(tmp_path):
    deps, builder = make_deps(tmp_path, ProofResult(ok=True), FakeRegistry(labels={LABEL_BUILD_ID: "other"}))
    run(deps)
    assert builder.built and builder.pushed


def test_cancelled_build_stops_at_the_boundary(tmp_path):
    deps, builder = make_deps(tmp_path, ProofResult(ok=True), cancelled=True)
    names, _ = run(deps)
    assert builder.built == [] and names == ["StageFinished:image:cancelled"]
    shutil.rmtree(tmp_path / "work", ignore_errors=True)


def test_a_job_the_bus_gives_up_on_is_reported_as_image_failed():
    from types import SimpleNamespace

    from services.imager.handlers import on_image_job_given_up
    from shared.logging import REDACT

    REDACT.add("s3cr3t-registry-pass")
    emitted = []
    ctx = SimpleNamespace(emit=emitted.append)
    on_image_job_given_up(job(), ctx, "gave up after 9 attempts: 401 for password s3cr3t-registry-pass")
    (failed,) = emitted
    assert type(failed).__name__ == "ImageFailed"
    assert (failed.target, failed.platform) == (job().target, job().platform)
    assert "gave up after 9 attempts" in failed.error and "s3cr3t-registry-pass" not in failed.error


class CountingProver(FakeProver):
    def __init__(self, result):
        super().__init__(result)
        self.runs = 0

    def prove(self, reference, *, platform, port, health_path):
        self.runs += 1
        return self.result


class ContentBuilder(FakeBuilder):
    """Every build holds the same runtime content (labels aside), as an unchanged service does."""

    def __init__(self, content_key="sha256:" + "e" * 64):
        super().__init__()
        self.content_key = content_key

    def build(self, context_tar, reference, *, platform, dockerfile="Dockerfile", progress=None):
        self.built.append(reference)
        return BuiltImage(
            image_id="sha256:img", reference=reference, size_bytes=10, content_key=self.content_key
        )


def proof_stage_detail(emitted):
    finished = [e for e in emitted if type(e).__name__ == "StageFinished" and e.stage == "image"]
    return finished[-1].detail["proof"]


def reuse_deps(tmp_path, result, content_key="sha256:" + "e" * 64):
    from services.imager.proof_cache import ProofCache

    deps, _ = make_deps(tmp_path, result)
    deps.builder, deps.prover = ContentBuilder(content_key), CountingProver(result)
    deps.proofs = ProofCache(tmp_path / "proofs", windows="3/30/4")
    return deps


def test_the_same_content_is_proven_once_then_its_proof_reused(tmp_path):
    deps = reuse_deps(tmp_path, ProofResult(ok=True, reason="still running after 3s"))
    run(deps)
    _, emitted = run(deps)  # the next build: same layers and start-up config, new labels
    assert deps.prover.runs == 1
    assert "proven before" in proof_stage_detail(emitted)
    assert len(deps.builder.built) == 2 and deps.builder.pushed  # still built (cache hits) and pushed


def test_a_replay_proves_again_whatever_the_cache_holds(tmp_path):
    deps = reuse_deps(tmp_path, ProofResult(ok=True, reason="up"))
    run(deps)
    emitted = []
    run_image_job(job(), JobContext("build-1", "demo", emitted.append, rerun=True, attempt=2), deps)
    assert deps.prover.runs == 2


def test_a_failed_proof_is_never_recorded(tmp_path):
    deps = reuse_deps(tmp_path, ProofResult(ok=False, reason="exited with code 1"))
    run(deps)
    run(deps)
    assert deps.prover.runs == 2 and not list((tmp_path / "proofs").glob("*"))


def test_content_the_builder_cannot_name_is_always_proven(tmp_path):
    deps = reuse_deps(tmp_path, ProofResult(ok=True, reason="up"), content_key=None)
    run(deps)
    run(deps)
    assert deps.prover.runs == 2


def test_runtime_key_ignores_labels_and_sees_layers_command_env_and_arch():
    from services.imager.proof_cache import runtime_key

    attrs = {
        "Architecture": "arm64",
        "Os": "linux",
        "RootFS": {"Layers": ["sha256:1", "sha256:2"]},
        "Config": {"Cmd": ["python3", "-m", "x"], "Env": ["A=1"], "Labels": {"dev.kiln.build-id": "b1"}},
    }
    key = runtime_key(attrs)
    relabelled = {**attrs, "Config": {**attrs["Config"], "Labels": {"dev.kiln.build-id": "b2"}}}
    assert runtime_key(relabelled) == key
    for changed in (
        {**attrs, "RootFS": {"Layers": ["sha256:1", "sha256:3"]}},
        {**attrs, "Config": {**attrs["Config"], "Cmd": ["python3", "-m", "y"]}},
        {**attrs, "Config": {**attrs["Config"], "Env": ["A=2"]}},
        {**attrs, "Architecture": "amd64"},
    ):
        assert runtime_key(changed) != key
    assert runtime_key({"Config": {}}) is None
