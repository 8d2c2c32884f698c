"""The one place that wires settings, bus, database, ports and the handler tables."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from services.imager.cache_bound import UNBOUNDED, BoundedCache
from services.imager.cleanup import CleanupPolicy, Janitor
from services.imager.handlers import (
    on_compile_completed,
    on_image_job_given_up,
    on_image_pushed,
    on_image_requested,
)
from services.imager.image_job import ImagerDeps
from services.imager.ports import EngineCleaner, ImageBuilder, Prover, RegistryAuth
from services.imager.proof_cache import ProofCache
from services.imager.receipt import ReceiptPolicy
from services.imager.settings import ImagerSettings
from services.imager.tier_venv import PipPolicy, TierVenvCache, host_platform
from services.imager.worker_ledger import WorkerLedger, new_worker_id
from shared.artifacts import pull_artifact
from shared.bus import SqlIdempotencyGuard
from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.live_logs import LogShipper
from shared.bus.worker import Consumer, Worker
from shared.config import load_config
from shared.db import make_engine, make_sessions
from shared.events.compile import Artifact, CompileCompleted, ImageRequested
from shared.events.image import ImagePushed
from shared.logging import REDACT, setup_logging
from shared.platforms import arch_of, per_platform
from shared.registry import RegistryClient
from shared.registry.transport import log_insecure_hosts, parse_hosts
from shared.sandbox import Sandbox

log = logging.getLogger("kiln.imager")


def make_builder(settings: ImagerSettings, worker_id: str | None = None) -> ImageBuilder:
    if settings.image_builder == "buildah":
        from services.imager.adapters.buildah import BuildahBuilder

        password = settings.registry_password.get_secret_value() if settings.registry_password else None
        auth = RegistryAuth(settings.registry_username, password)
        return BuildahBuilder(
            insecure_hosts=parse_hosts(settings.registry_insecure_hosts),
            auth=auth,
            scratch_dir=settings.imager_work_dir / "jobs",
            scratch_prefix=f"{worker_id}-buildah-" if worker_id else "kiln-buildah-",
        )
    from services.imager.adapters.docker_engine import DockerEngineBuilder

    return DockerEngineBuilder()


def make_cleaner(settings: ImagerSettings) -> EngineCleaner:
    if settings.image_builder == "buildah":
        from services.imager.adapters.buildah_cleanup import BuildahCleaner

        return BuildahCleaner()
    from services.imager.adapters.docker_cleanup import DockerEngineCleaner

    return DockerEngineCleaner()


def make_janitor(settings: ImagerSettings, cleaner: EngineCleaner, worker_id: str) -> Janitor:
    work = settings.imager_work_dir
    longest_proof = settings.prove_timeout_s * settings.prove_emulated_factor
    bound = int(settings.imager_cache_max_bytes) or UNBOUNDED
    return Janitor(
        cleaner,
        WorkerLedger(work, worker_id),
        BoundedCache([work / "tiers", work / "artifacts"], bound),
        work,
        CleanupPolicy(keep_pushed=settings.imager_keep_pushed, stale_proof_s=max(900.0, 3 * longest_proof)),
    )


def make_proof_cache(settings: ImagerSettings) -> ProofCache | None:
    """The proofs this host's workers passed, by image content; off with KILN_IMAGER_REUSE_PROOFS=false."""
    if not settings.imager_reuse_proofs:
        return None
    windows = f"{settings.prove_stay_up_s}/{settings.prove_timeout_s}/{settings.prove_emulated_factor}"
    return ProofCache(settings.imager_work_dir / "proofs", windows)


def make_prover(settings: ImagerSettings, worker_id: str | None = None) -> Prover:
    """The proof runs where the image was built: the same engine, or buildah without a daemon."""
    windows = {
        "stay_up_s": settings.prove_stay_up_s,
        "timeout_s": settings.prove_timeout_s,
        "emulated_factor": settings.prove_emulated_factor,
        "host_platform": host_platform(),
    }
    if settings.image_builder == "buildah":
        from services.imager.adapters.buildah_prover import BuildahProver

        return BuildahProver(
            **windows, sandbox=Sandbox(required=not settings.allow_unsandboxed), worker_id=worker_id
        )
    from services.imager.adapters.docker_prover import DockerProver

    return DockerProver(**windows, worker_id=worker_id)


def bootstrap(
    settings: ImagerSettings,
    *,
    builder: ImageBuilder | None = None,
    prover: Prover | None = None,
    registry: RegistryClient | None = None,
    cleaner: EngineCleaner | None = None,
    sessions: sessionmaker | None = None,
    with_database: bool = True,
    manifests: bool = True,
) -> Worker:
    """The imager's worker: image jobs of its platform, and (`manifests`) multi-arch indexes.
    `parts`: `deps` (what a job needs) and `sessions`. With a fake builder and no `cleaner`
    (unit tests), nothing is cleaned up."""
    setup_logging(settings.log_level, fmt=settings.log_format, secrets=settings.secret_values().values())
    REDACT.add(*settings.secret_values().values())
    log_insecure_hosts(parse_hosts(settings.registry_insecure_hosts), log)
    registry = registry or RegistryClient.from_settings(settings)
    cancel = CancelWatch()
    password = settings.registry_password.get_secret_value() if settings.registry_password else None

    def fetch_artifact(artifact: Artifact, dest: Path) -> Path:
        return pull_artifact(artifact.reference, dest, client=registry)

    worker_id = new_worker_id()
    if cleaner is None and builder is None:
        cleaner = make_cleaner(settings)
    janitor = make_janitor(settings, cleaner, worker_id) if cleaner is not None else None
    deps = ImagerDeps(
        builder=builder or make_builder(settings, worker_id),
        prover=prover or make_prover(settings, worker_id),
        registry=registry,
        fetch_artifact=fetch_artifact,
        tiers=TierVenvCache(
            settings.imager_work_dir / "tiers",
            PipPolicy(settings.pip_index_url, settings.pip_allow_sdists, settings.pip_cert),
            Sandbox(required=not settings.allow_unsandboxed),
        ),
        work_dir=settings.imager_work_dir,
        auth=RegistryAuth(settings.registry_username, password),
        config_path=settings.config_path,
        is_cancelled=cancel.is_cancelled,
        logs=LogShipper("imager", secrets=settings.secret_values().values()),
        janitor=janitor,
        proofs=make_proof_cache(settings) if builder is None else None,
    )
    if sessions is None and with_database:
        sessions = make_sessions(make_engine(settings.database_url))
    receipt = receipt_policy(settings, registry.host)
    jobs = {
        ImageRequested: functools.partial(
            on_image_requested, deps=deps, platform=settings.platform, receipt=receipt
        )
    }
    # Its prefetch is how many image jobs run at once: each runs in its own thread (shared.bus.dispatch).
    job_queue = t.imager_queue(arch_of(settings.platform))
    job_queue = dataclasses.replace(job_queue, prefetch=settings.imager_concurrency)
    consumers = [
        Consumer(
            job_queue,
            jobs,
            give_up={ImageRequested: on_image_job_given_up},
        )
    ]
    if sessions is not None and manifests:
        index_handlers = {
            CompileCompleted: functools.partial(on_compile_completed, sessions=sessions, registry=registry),
            ImagePushed: functools.partial(
                on_image_pushed, sessions=sessions, registry=registry, receipt=receipt
            ),
        }
        consumers.append(Consumer(t.IMAGER_MANIFESTS, index_handlers))

    async def warm_up(_bus) -> None:
        await asyncio.to_thread(warm_up_registry, registry)
        if janitor is not None:
            await asyncio.to_thread(start_clean, janitor)

    def stop_clean() -> None:
        if janitor is not None:
            janitor.ledger.release()

    return Worker(
        source="imager",
        settings=settings,
        consumers=consumers,
        guard=SqlIdempotencyGuard(sessions) if sessions is not None else None,
        cancel=cancel,
        logs=deps.logs,
        on_start=[warm_up],
        on_stop=[stop_clean],
        health_port=settings.health_port,
        parts={"deps": deps, "sessions": sessions},
    )


def warm_up_registry(registry: RegistryClient) -> None:
    """Authenticate and open the HTTP connection before the first job, so the first image's
    hand-off does not pay for it; a registry that is down now is reported, not fatal (jobs retry)."""
    try:
        registry.ping()
    except Exception as exc:
        log.warning("registry %s not reachable at start (%s); jobs will retry against it", registry.host, exc)


def start_clean(janitor: Janitor) -> None:
    """Claim this worker's lock, then remove what dead predecessors left (never fatal)."""
    try:
        janitor.ledger.claim()
    except OSError as exc:
        where = janitor.ledger.root
        log.warning("cannot take the worker lock under %s (%s): leftovers are not cleaned", where, exc)
        return
    janitor.at_start()


def receipt_policy(settings: ImagerSettings, registry_host: str) -> ReceiptPolicy:
    """What a job may name: read per job from the operator config, so a change applies without a
    restart (as the scanner's policy)."""
    path = settings.config_path
    return ReceiptPolicy(
        load_config=functools.partial(load_config, path) if path else None,
        registry_host=registry_host,
        artifact_store=settings.artifact_store or f"{registry_host}/kiln",
        default_base_images=per_platform(settings, "base_image_"),
    )
