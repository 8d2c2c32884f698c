"""The gate's handlers: record what each event says, then let the gate decide.

Idempotency: every write is an upsert keyed by (build, target, platform); the build's status row
guards the deploy and the end of the build, which happen once per build. A redelivery of the
event that won redoes its work and re-emits the same derived event ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from services.deployer.gate import ImageState, decide
from services.deployer.models import DeployerBuild
from services.deployer.references import repository_problem
from services.deployer.store import GateStore
from shared.bus import EventContext, PermanentError
from shared.config import ConfigError, KilnConfig
from shared.events import (
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    ImageFailed,
    ImagePushed,
    ManifestPushed,
    ScanCompleted,
)
from shared.platforms import DEFAULT

log = logging.getLogger("kiln.deployer")

# (ctx, build row, images) -> None; ends the build itself (deploy + verify + BuildFinished).
DeployFn = Callable[[EventContext, DeployerBuild, list[ImageState]], None]


def on_build_requested(event: BuildRequested, ctx: EventContext, *, store: GateStore) -> None:
    store.ensure_build(
        ctx.build_id,
        event.package,
        event.options.model_dump(mode="json"),
        event.source.model_dump(mode="json"),
    )


def on_compile_completed(
    event: CompileCompleted, ctx: EventContext, *, store: GateStore, deploy: DeployFn, require_scan: bool
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    if not event.ok:
        return  # the compiler ends a build whose compile failed
    store.expect_targets(ctx.build_id, [(t.target, t.platform) for t in event.targets])
    advance(ctx, store=store, deploy=deploy, require_scan=require_scan)


def on_image_pushed(
    event: ImagePushed, ctx: EventContext, *, store: GateStore, deploy: DeployFn, require_scan: bool
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    store.update_image(
        ctx.build_id,
        event.target,
        event.platform,
        pushed=True,
        repository=event.repository,
        tag=event.tag,
        digest=event.digest,
    )
    advance(ctx, store=store, deploy=deploy, require_scan=require_scan)


def on_image_failed(
    event: ImageFailed, ctx: EventContext, *, store: GateStore, deploy: DeployFn, require_scan: bool
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    store.update_image(ctx.build_id, event.target, event.platform, failure=event.error or "failed")
    advance(ctx, store=store, deploy=deploy, require_scan=require_scan, log_tail=event.log_tail)


def on_scan_completed(
    event: ScanCompleted, ctx: EventContext, *, store: GateStore, deploy: DeployFn, require_scan: bool
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(event.counts.items()) if v)
    blocking = ", ".join(f.id for f in event.blocking[:10])
    summary = f"{counts or 'no counts'}; blocking: {blocking or '-'}" + (
        f"; {event.note}" if event.note else ""
    )
    store.update_image(
        ctx.build_id, event.target, event.platform, scanned=True, verdict=event.verdict, scan_summary=summary
    )
    advance(ctx, store=store, deploy=deploy, require_scan=require_scan)


def on_manifest_pushed(
    event: ManifestPushed, ctx: EventContext, *, store: GateStore, load_config: Callable[[], KilnConfig]
) -> None:
    # The gate deploys per-platform digests; the index matters to the reporter, not to the gate.
    # Still, an index outside the operator's registry is refused: it ends the build (give-up).
    try:
        pkg = load_config().package(ctx.package)
    except (ConfigError, KeyError) as exc:
        raise PermanentError(f"manifest.pushed for package {ctx.package!r}: config: {exc}") from None
    # The index lives in the repository without a platform suffix, the default platform's.
    problem = repository_problem(event.repository, event.target, DEFAULT.name, ctx.package, pkg)
    if problem:
        raise PermanentError(f"manifest.pushed refused: {problem}")
    store.ensure_build(ctx.build_id, ctx.package)


def on_build_finished(event: BuildFinished, ctx: EventContext, *, store: GateStore) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    store.mark_finished_elsewhere(ctx.build_id, event.status)


def on_cancel_requested(event: BuildCancelRequested, ctx: EventContext, *, store: GateStore) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    if store.finish(ctx.build_id, ctx.envelope.id, "cancelled"):
        ctx.emit(
            BuildFinished(
                status="cancelled",
                duration_ms=_elapsed_ms(store.build(ctx.build_id)),
                error=f"cancelled: {event.reason}" if event.reason else "cancelled",
            )
        )


def advance(
    ctx: EventContext,
    *,
    store: GateStore,
    deploy: DeployFn,
    require_scan: bool,
    log_tail: tuple[str, ...] = (),
) -> None:
    images = store.images(ctx.build_id)
    build = store.build(ctx.build_id)
    if build is None:
        return
    decision = decide(build.targets_known, images, require_scan=require_scan)
    if decision.action == "wait":
        log.info("build %s waits for %s", ctx.build_id, ", ".join(decision.waiting_for[:5]))
    elif decision.action == "fail":
        finish(
            ctx, store, "failed", failed_stage=decision.failed_stage, error=decision.error, log_tail=log_tail
        )
    elif store.claim_deploy(ctx.build_id, ctx.envelope.id):
        if (build.options or {}).get("skip_deploy"):
            finish(ctx, store, "succeeded", error=None)
        else:
            deploy(ctx, build, images)


def finish(
    ctx: EventContext,
    store: GateStore,
    status: str,
    *,
    failed_stage: str | None = None,
    error: str | None = None,
    log_tail: tuple[str, ...] = (),
) -> None:
    """End the build once; a redelivery of the finishing event re-emits the same event id."""
    if store.finish(ctx.build_id, ctx.envelope.id, status):
        ctx.emit(
            BuildFinished(
                status=status,  # type: ignore[arg-type]
                duration_ms=_elapsed_ms(store.build(ctx.build_id)),
                failed_stage=failed_stage,
                error=error,
                log_tail=log_tail,
            )
        )


def _elapsed_ms(build: DeployerBuild | None) -> int:
    if build is None or build.started_at is None:
        return 0
    started = build.started_at.replace(tzinfo=UTC)
    return max(0, int((datetime.now(UTC) - started).total_seconds() * 1000))
