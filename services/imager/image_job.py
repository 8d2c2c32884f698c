"""One image job: fetch the artifact, build, prove, push. No bus here: events go out via `emit`.

Order matters for the contract "never `latest` unless it starts": the image is proven before any
tag is pushed, the immutable build tag is pushed before `latest`, and a job whose build tag already
carries this build's id in the registry is answered from the registry (redelivery after a crash).

While stage image (build + proof) and stage push run, their output goes out as live log lines
(`deps.logs`, shared/bus/live_logs.py), each stream closed before the stage's StageFinished.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.imager.build_context import MissingFactory, directory_context, service_context
from services.imager.cleanup import Janitor, JobTracker, Untracked
from services.imager.dockerfile import LAUNCHER_SOURCE, ImageSpec, render_dockerfile
from services.imager.ports import BuildFailed, ImageBuilder, Prover, RegistryAuth
from services.imager.proof_cache import ProofCache
from services.imager.tier_venv import TierPreparationFailed, TierVenvCache
from services.imager.tiers import artifact_python, resolve_tier
from services.imager.traceback_reading import kept_factories_hint
from shared.bus.live_logs import LineSink, LogShipper, discard
from shared.bus.stage import finish_stage, stage
from shared.events import Event
from shared.events.compile import Artifact, ImageRequested
from shared.events.image import ImageFailed, ImagePushed
from shared.registry import NotFound, RegistryClient

LABEL_BUILD_ID = "dev.kiln.build-id"
# A worker's jobs run side by side (KILN_IMAGER_CONCURRENCY), but their builds one at a time: the
# classic builder is not reproducible (a layer it makes records the time as its directories'
# mtimes), so sibling services building the same layer at once would each make their own, and
# identical content would get different layer digests (more to push, proofs not reused). One
# after the other, the second finds the first's layer in the cache. Proofs, the slow part, overlap.
BUILDS_ONE_AT_A_TIME = threading.Lock()


@dataclass
class ImagerDeps:
    builder: ImageBuilder
    prover: Prover
    registry: RegistryClient
    fetch_artifact: Callable[[Artifact, Path], Path]
    tiers: TierVenvCache
    work_dir: Path
    auth: RegistryAuth
    config_path: str | None = None
    # Set from the process's CancelWatch: checked at the stage boundaries (before build, before push).
    is_cancelled: Callable[[str, int], bool] = lambda _build_id, _attempt: False
    logs: LogShipper | None = None  # live log lines; None: not shipped (unit tests, CLIs)
    # Removes the job's images after it (pushed or not) and bounds the caches; None: no clean-up.
    janitor: Janitor | None = None
    # Proofs passed before, by image content: the same content is not proven twice; None: always prove.
    proofs: ProofCache | None = None


@dataclass(frozen=True)
class JobContext:
    build_id: str
    package: str
    emit: Callable[[Event], object]
    # From EventContext.maybe_handled_before: redelivered, retried or replayed.
    maybe_ran_before: bool = True
    # A replay (`kiln replay --from image`): the image is built and proven again, even though
    # the earlier attempt's is in the registry; a redelivery within an attempt is not a rerun.
    rerun: bool = False
    attempt: int = 1  # a cancel stops the attempts up to the one it was sent for


class ImageRejected(Exception):
    """The image cannot be built or does not start: reported as image.failed, never retried."""

    def __init__(self, message: str, log: list[str]):
        super().__init__(message)
        self.log = log


def repository_path(repository: str) -> str:
    """`127.0.0.1:5000/kiln/x` -> `kiln/x` (the registry client takes paths without the host)."""
    first, _, rest = repository.partition("/")
    return rest if rest and ("." in first or ":" in first or first == "localhost") else repository


def immutable_tags(event: ImageRequested) -> list[str]:
    return [tag for tag in event.tags if tag != "latest"] or ["latest"]


def run_image_job(event: ImageRequested, job: JobContext, deps: ImagerDeps) -> None:
    where = {"target": event.target, "platform": event.platform}
    repo = repository_path(event.repository)
    first_tag = immutable_tags(event)[0]
    # Only a job that may have run before can find its image pushed already; a first delivery
    # skips the registry round trip, which would otherwise delay stage.started (the hand-off).
    recover = job.maybe_ran_before and not job.rerun
    done = _already_pushed(deps.registry, repo, first_tag, job.build_id) if recover else None
    if done is not None and not event.skip_push:
        job.emit(_pushed(event, done, deps.registry.image_size(repo, done), proven=True))
        return
    if deps.is_cancelled(job.build_id, job.attempt):
        finish_stage(job, "image", "cancelled", **where)
        return
    with deps.janitor.job() if deps.janitor else contextlib.nullcontext(Untracked()) as tracker:
        _build_prove_push(event, job, deps, tracker)


def _build_prove_push(event: ImageRequested, job: JobContext, deps: ImagerDeps, tracker: JobTracker) -> None:
    where = {"target": event.target, "platform": event.platform}
    local_ref = f"{event.repository}:{immutable_tags(event)[0]}"
    with stage(job, "image", logs=deps.logs, package=job.package, **where) as run:
        try:
            built, proof_reason = _build_and_prove(event, job, deps, local_ref, tracker, run.log)
        except ImageRejected as exc:
            run.fail(str(exc), log_tail=exc.log)
            run.emit_with_verdict(ImageFailed(error=run.error, log_tail=run.log_tail, **where))
        else:
            run.detail.update(image_id=built.image_id, size_bytes=built.size_bytes, proof=proof_reason)
    if run.failed:
        return
    if event.skip_push:
        finish_stage(job, "push", "skipped", **where)
        return
    if deps.is_cancelled(job.build_id, job.attempt):  # proven but not pushed: nothing half-published
        finish_stage(job, "push", "cancelled", **where)
        return
    repo = repository_path(event.repository)
    with stage(job, "push", logs=deps.logs, package=job.package, **where) as run:
        digest = ""
        for tag in [*immutable_tags(event), *(["latest"] if "latest" in event.tags else [])]:
            reference = f"{event.repository}:{tag}"
            tracker.tagged(reference)
            deps.builder.tag(built.image_id, reference)
            run.log(f"pushing {reference}")
            digest = deps.builder.push(reference, deps.auth, progress=run.log).digest
            run.log(f"pushed {reference}: {digest}")
        tracker.pushed(event.repository)
        size = deps.registry.image_size(repo, digest)
        run.detail.update(digest=digest, size_bytes=size)
    job.emit(_pushed(event, digest, size, proven=True))


def _build_and_prove(
    event: ImageRequested,
    job: JobContext,
    deps: ImagerDeps,
    local_ref: str,
    tracker: JobTracker | Untracked,
    log: LineSink = discard,
):
    prefix = deps.janitor.scratch_prefix if deps.janitor else None
    with tempfile.TemporaryDirectory(prefix=prefix, dir=_ensure(deps.work_dir / "jobs")) as scratch:
        try:
            with _held(deps, lambda: _artifact_root(event, deps, Path(scratch))) as root:
                if event.dockerfile:
                    context, dockerfile = directory_context(root), event.dockerfile
                else:
                    context, dockerfile = _service_context(event, job, deps, root), "Dockerfile"
            log(f"building {local_ref} for {event.platform}")
            tracker.tagged(local_ref)  # before the build: a worker killed during it leaves the tag
            with BUILDS_ONE_AT_A_TIME:
                built = deps.builder.build(
                    context, local_ref, platform=event.platform, dockerfile=dockerfile,
                    progress=tracker.watching(log),
                )  # fmt: skip
        except BuildFailed as exc:
            raise ImageRejected(str(exc), exc.log) from exc
        except (MissingFactory, TierPreparationFailed) as exc:
            log(str(exc))
            raise ImageRejected(str(exc), str(exc).splitlines()) from exc
    probe = (
        f"until {event.health_path} answers on port {event.port}" if event.health_path else "while it runs"
    )
    log(f"built {built.image_id[:19]} ({built.size_bytes / 1e6:.1f} MB)")
    question = deps.proofs.question(
        built.content_key, platform=event.platform, port=event.port, health_path=event.health_path
    ) if deps.proofs else None  # fmt: skip
    past = deps.proofs.find(question) if deps.proofs and question and not job.rerun else None
    if past is not None:
        log(f"proof reused: the same content (layers, command, environment) passed in build {past.build_id}")
        return built, f"{past.reason} (proven before, same content)"
    log(f"proving it starts: watching it {probe}")
    proof = deps.prover.prove(
        local_ref, platform=event.platform, port=event.port, health_path=event.health_path
    )
    for line in proof.log:
        log(f"| {line}")  # the container's own output, marked so it reads apart from ours
    if not proof.ok:
        reason = proof.reason + (kept_factories_hint(proof.missing, event.factories) if proof.missing else "")
        log(f"proof failed: {reason}")
        raise ImageRejected(f"{event.target} ({event.platform}) does not start: {reason}", proof.log)
    log(f"proof passed: {proof.reason}")
    if deps.proofs and question:
        deps.proofs.record(question, proof.reason, job.build_id)
    return built, proof.reason


def _service_context(event: ImageRequested, job: JobContext, deps: ImagerDeps, root: Path) -> bytes:
    requirements_hash = None
    if event.tier:
        tier = resolve_tier(event.tier, root, deps.config_path)
        requirements_hash = tier.requirements_hash(event.platform)
    labels = {
        LABEL_BUILD_ID: job.build_id,
        "dev.kiln.package": job.package,
        "dev.kiln.service": event.target,
        "dev.kiln.platform": event.platform,
        "org.opencontainers.image.title": event.target,
        "org.opencontainers.image.version": immutable_tags(event)[0],
        "org.opencontainers.image.vendor": "kiln",
    }
    commit = getattr(event, "commit", None)
    if commit:
        labels["dev.kiln.commit"] = labels["org.opencontainers.image.revision"] = commit
    spec = ImageSpec(
        base_image=event.base_image,
        command=event.command,
        factories=event.factories,
        tier=event.tier,
        requirements_hash=requirements_hash,
        port=event.port,
        health_path=event.health_path,
        labels=labels,
    )
    if not event.tier:
        return service_context(render_dockerfile(spec), root, event.factories, None, LAUNCHER_SOURCE)
    python = artifact_python(root)  # the base image's CPython, as the compiler read it
    with _held(deps, lambda: deps.tiers.prepare(tier, event.platform, python)) as tier_dir:
        return service_context(render_dockerfile(spec), root, event.factories, tier_dir, LAUNCHER_SOURCE)


@contextlib.contextmanager
def _held(deps: ImagerDeps, prepare: Callable[[], Path]) -> Iterator[Path]:
    """A cache entry, held against eviction (by any worker on this host) while it is read into
    the build context; prepared again if it was evicted between being found and being held."""
    for _attempt in range(3):
        path = prepare()
        if deps.janitor is None:
            yield path
            return
        with deps.janitor.cache.lease(path) as present:
            if present:
                yield path
                return
    raise ImageRejected(f"the cache entry {path.name} was evicted three times while being used", [])


def _artifact_root(event: ImageRequested, deps: ImagerDeps, scratch: Path) -> Path:
    """Artifacts are content addressed: one pulled copy per digest serves every target of it."""
    if event.artifact is None:
        raise ImageRejected("the job names no artifact to build from", [])
    key = (event.artifact.digest or event.artifact.reference.rpartition("@")[2]).replace(":", "-")
    cached = deps.work_dir / "artifacts" / key
    if key and cached.is_dir():
        return cached
    landing = scratch / "artifact"
    deps.fetch_artifact(event.artifact, landing)
    if not key:
        return landing
    _ensure(cached.parent)
    try:
        landing.rename(cached)
    except OSError:  # another worker on this host got there first; theirs is identical
        shutil.rmtree(landing, ignore_errors=True)
    return cached


def _already_pushed(registry: RegistryClient, repo: str, tag: str, build_id: str) -> str | None:
    """The digest at repo:tag if it is this build's image (same build id label), else None."""
    try:
        _, digest, data = registry.get_manifest(repo, tag)
    except NotFound:
        return None
    config_digest = json.loads(data).get("config", {}).get("digest")
    if not config_digest:
        return None
    labels = json.loads(registry.get_blob(repo, config_digest)).get("config", {}).get("Labels") or {}
    return digest if labels.get(LABEL_BUILD_ID) == build_id else None


def _pushed(event: ImageRequested, digest: str, size: int, *, proven: bool) -> ImagePushed:
    return ImagePushed(
        target=event.target,
        platform=event.platform,
        repository=event.repository,
        tag=immutable_tags(event)[0],
        tags=tuple(event.tags),
        digest=digest,
        size_bytes=size,
        proven=proven,
    )


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
