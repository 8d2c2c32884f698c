"""The imager's handlers: plain functions, wired in bootstrap.py."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from services.imager.image_job import ImagerDeps, JobContext, run_image_job
from services.imager.manifests import assemble_ready, record_expected, record_pushed
from services.imager.ports import RegistryAuthFailed
from shared.bus import EventContext, PermanentError
from shared.events.compile import CompileCompleted, ImageRequested
from shared.events.image import ImagePushed
from shared.registry import RegistryAuthError, RegistryClient


def on_image_requested(event: ImageRequested, ctx: EventContext, *, deps: ImagerDeps, platform: str) -> None:
    """Ack (return) only after the image is pushed or reported failed; a crash leaves it queued."""
    if event.platform != platform:
        raise PermanentError(f"job for {event.platform} reached a {platform} worker (routing is per arch)")
    try:
        run_image_job(event, JobContext(ctx.build_id, ctx.package, ctx.emit, ctx.maybe_handled_before), deps)
    except (RegistryAuthFailed, RegistryAuthError) as exc:
        # Not permanent on purpose: credentials get fixed/rotated; bounded retries, then the DLQ.
        raise RegistryAuthFailed(
            f"registry {deps.registry.host} refused the imager's credentials "
            f"(check KILN_REGISTRY_USERNAME/KILN_REGISTRY_PASSWORD): {exc}"
        ) from exc


def on_compile_completed(
    event: CompileCompleted, ctx: EventContext, *, sessions: sessionmaker, registry: RegistryClient
) -> None:
    targets = record_expected(sessions, ctx.build_id, event)
    assemble_ready(sessions, ctx.build_id, targets, registry=registry, emit=ctx.emit)


def on_image_pushed(
    event: ImagePushed, ctx: EventContext, *, sessions: sessionmaker, registry: RegistryClient
) -> None:
    targets = record_pushed(sessions, ctx.build_id, event)
    assemble_ready(sessions, ctx.build_id, targets, registry=registry, emit=ctx.emit)
