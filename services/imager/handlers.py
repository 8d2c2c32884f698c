"""The imager's handlers: plain functions, wired in bootstrap.py."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from services.imager.image_job import ImagerDeps, JobContext, run_image_job
from services.imager.manifests import assemble_ready, record_expected, record_pushed
from services.imager.ports import RegistryAuthFailed
from services.imager.receipt import ReceiptPolicy, check_job, check_pushed
from shared.bus import EventContext, PermanentError
from shared.events import BuildFinished
from shared.events.compile import CompileCompleted, ImageRequested
from shared.events.image import ImageFailed, ImagePushed
from shared.logging import REDACT
from shared.registry import RegistryAuthError, RegistryClient


def on_image_requested(
    event: ImageRequested, ctx: EventContext, *, deps: ImagerDeps, platform: str, receipt: ReceiptPolicy
) -> None:
    """Ack (return) only after the image is pushed or reported failed; a crash leaves it queued."""
    if event.platform != platform:
        raise PermanentError(f"job for {event.platform} reached a {platform} worker (routing is per arch)")
    check_job(event, ctx.package, receipt)  # before anything is fetched, built or pushed
    try:
        job = JobContext(
            ctx.build_id,
            ctx.package,
            ctx.emit,
            ctx.maybe_handled_before,
            rerun=ctx.envelope.replayof is not None,
            attempt=ctx.envelope.attempt,
        )
        run_image_job(event, job, deps)
    except (RegistryAuthFailed, RegistryAuthError) as exc:
        # Not permanent on purpose: credentials get fixed/rotated; bounded retries, then the DLQ.
        raise RegistryAuthFailed(
            f"registry {deps.registry.host} refused the imager's credentials "
            f"(check KILN_REGISTRY_USERNAME/KILN_REGISTRY_PASSWORD): {exc}"
        ) from exc


def on_image_job_given_up(event: ImageRequested | None, ctx: EventContext, reason: str) -> None:
    """The bus dead-lettered this job after reading it (refused, a worker kept dying on it, or its
    retries ran out): report image.failed, so the deployer ends the build naming target and
    platform. A job whose fields were malformed (event None) names no target to trust: the build
    is ended directly, with the reason."""
    if event is None:
        error = REDACT(f"the imager refused an image job: {reason}")[:4000]
        ctx.emit(BuildFinished(status="failed", failed_stage="image", error=error))
        return
    error = REDACT(f"the {event.platform} imager gave up on this job: {reason}")[:4000]
    ctx.emit(ImageFailed(target=event.target, platform=event.platform, error=error))


def on_compile_completed(
    event: CompileCompleted, ctx: EventContext, *, sessions: sessionmaker, registry: RegistryClient
) -> None:
    targets = record_expected(sessions, ctx.build_id, event)
    assemble_ready(sessions, ctx.build_id, targets, registry=registry, emit=ctx.emit)


def on_image_pushed(
    event: ImagePushed,
    ctx: EventContext,
    *,
    sessions: sessionmaker,
    registry: RegistryClient,
    receipt: ReceiptPolicy,
) -> None:
    check_pushed(event, ctx.package, receipt)  # an index names only derived repositories
    targets = record_pushed(sessions, ctx.build_id, event)
    assemble_ready(sessions, ctx.build_id, targets, registry=registry, emit=ctx.emit)
