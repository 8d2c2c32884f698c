"""The gate's handlers: record what each event says, then let the gate decide.

Idempotency: every write is an upsert keyed by (build, target, platform[, fact]); the build's
status row guards the deploy and the end of the build, which happen once per build. A
redelivery of the event that won redoes its work and re-emits the same derived event ids.

The gate's inputs: compile.completed (which images to expect), image.pushed (each image's
reference), and facts: `stage.finished` of every gate stage (`facts`, from shared.stages) and
image.failed (a failed `image` fact). `required` is the facts every deploy waits for;
`package_facts(package)` adds the optional gate stages the package turns on (its audits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from services.deployer.gate import (
    IMAGE_FACT,
    ImageState,
    decide,
    facts_without_a_push,
    only_attempt,
    rerun_starts_at,
    stale_facts,
)
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
    StageFinished,
)
from shared.platforms import DEFAULT
from shared.stages import job_of

log = logging.getLogger("kiln.deployer")

# (ctx, build row, images) -> None; ends the build itself (deploy + verify + BuildFinished).
DeployFn = Callable[[EventContext, DeployerBuild, list[ImageState]], None]
# package -> the optional gate facts (shared.stages.OPTIONAL_GATE_FACTS) its deploy waits for too.
PackageFacts = Callable[[str], Sequence[str]]


def no_package_facts(package: str) -> Sequence[str]:
    return ()


def follow_attempt(ctx: EventContext, store: GateStore, stage: str | None = None) -> None:
    """An event of a newer attempt than the gate's state (`kiln replay`) reopens the build: the
    deploy is unclaimed and the facts of the stages that rerun are dropped, so the gate waits
    for their new verdicts and then deploys again. Redeliveries within an attempt change nothing."""
    attempt = ctx.envelope.attempt
    if attempt <= 1:
        return
    only = ctx.envelope.replayonly
    first = only or rerun_starts_at(ctx.envelope.routing_key(), stage)
    # `--only`: the facts of that job alone are redone; every later stage's stand.
    stale = tuple(spec.name for spec in job_of(only)) if only else stale_facts(first)
    if store.reopen(ctx.build_id, attempt, stale):
        log.info("build %s: attempt %d reruns %s %s; the gate is open again", ctx.build_id, attempt,
                 "only" if only else "from", first)  # fmt: skip


def on_build_requested(event: BuildRequested, ctx: EventContext, *, store: GateStore) -> None:
    store.ensure_build(
        ctx.build_id,
        event.package,
        event.options.model_dump(mode="json"),
        event.source.model_dump(mode="json"),
    )
    follow_attempt(ctx, store)


def on_compile_completed(
    event: CompileCompleted,
    ctx: EventContext,
    *,
    store: GateStore,
    deploy: DeployFn,
    required: Sequence[str],
    package_facts: PackageFacts = no_package_facts,
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    follow_attempt(ctx, store)
    if not event.ok:
        return  # the compiler ends a build whose compile failed
    app_config = event.app_config.model_dump(mode="json") if event.app_config else None
    store.expect_targets(ctx.build_id, [(t.target, t.platform) for t in event.targets], app_config)
    advance(ctx, store=store, deploy=deploy, required=required, package_facts=package_facts)


def on_image_pushed(
    event: ImagePushed,
    ctx: EventContext,
    *,
    store: GateStore,
    deploy: DeployFn,
    required: Sequence[str],
    package_facts: PackageFacts = no_package_facts,
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    follow_attempt(ctx, store)
    store.update_image(
        ctx.build_id,
        event.target,
        event.platform,
        repository=event.repository,
        tag=event.tag,
        digest=event.digest,
    )
    advance(ctx, store=store, deploy=deploy, required=required, package_facts=package_facts)


def on_image_failed(
    event: ImageFailed,
    ctx: EventContext,
    *,
    store: GateStore,
    deploy: DeployFn,
    required: Sequence[str],
    package_facts: PackageFacts = no_package_facts,
) -> None:
    store.ensure_build(ctx.build_id, ctx.package)
    follow_attempt(ctx, store)
    store.record_fact(ctx.build_id, event.target, event.platform, IMAGE_FACT, False, event.error or "failed")
    advance(
        ctx,
        store=store,
        deploy=deploy,
        required=required,
        package_facts=package_facts,
        log_tail=event.log_tail,
    )


def records_fact(event: StageFinished, *, facts: Sequence[str]) -> bool:
    """Is this stage.finished a gate fact? Of ~40 per build, only the gate stages' per-image ones
    are; a cancelled stage says nothing (the cancel itself ends the build)."""
    return (
        event.stage in facts
        and event.target is not None
        and event.platform is not None
        and event.status in ("succeeded", "skipped", "failed")
    )


def on_stage_finished(
    event: StageFinished,
    ctx: EventContext,
    *,
    store: GateStore,
    deploy: DeployFn,
    required: Sequence[str],
    facts: Sequence[str],
    package_facts: PackageFacts = no_package_facts,
) -> None:
    if not records_fact(event, facts=facts):
        return  # normally filtered before (shared.bus.dispatch.Only); this keeps it true anyway
    assert event.target is not None and event.platform is not None
    store.ensure_build(ctx.build_id, ctx.package)
    follow_attempt(ctx, store, event.stage)
    ok = event.status in ("succeeded", "skipped")
    store.record_fact(ctx.build_id, event.target, event.platform, event.stage, ok, fact_summary(event))
    tail = () if ok else event.log_tail
    advance(ctx, store=store, deploy=deploy, required=required, package_facts=package_facts, log_tail=tail)


def fact_summary(event: StageFinished) -> str | None:
    """A line for the build's error: the stage's counts and blocking ids when its detail has them
    (the scanner's), then its error (the scanner's policy reasons)."""
    parts = []
    counts: Any = event.detail.get("counts")
    if isinstance(counts, dict):
        parts.append(", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v) or "no counts")
    blocking: Any = event.detail.get("blocking")
    if isinstance(blocking, list):
        parts.append("blocking: " + (", ".join(str(b) for b in blocking[:10]) or "-"))
    if event.error:
        parts.append(event.error)
    return "; ".join(parts) or None


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
    build = store.build(ctx.build_id)
    if build is not None and ctx.envelope.attempt < (build.attempt or 1):
        log.info("build %s: a cancel of attempt %d does not stop attempt %d", ctx.build_id,
                 ctx.envelope.attempt, build.attempt)  # fmt: skip
        return
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
    required: Sequence[str],
    package_facts: PackageFacts = no_package_facts,
    log_tail: tuple[str, ...] = (),
) -> None:
    images = store.images(ctx.build_id)
    build = store.build(ctx.build_id)
    if build is None:
        return
    required = (*required, *package_facts(build.package))
    options = build.options or {}
    # Nothing pushed, nothing to scan, attest or deploy: the build ends once every image is
    # built and proven (its push finished `skipped`).
    skip_push = bool(options.get("skip_push"))
    if skip_push:
        required = facts_without_a_push(required)
    needs_reference = not skip_push
    # `kiln replay --only <stage>` of another service's job: done when that job's facts are in.
    only = only_attempt(ctx.envelope.replayonly, required) if ctx.envelope.replayonly else None
    if only is not None:
        required, needs_reference = only.required, only.needs_reference and needs_reference
    decision = decide(
        build.targets_known,
        images,
        store.facts(ctx.build_id),
        required=required,
        needs_reference=needs_reference,
    )
    if decision.action == "wait":
        log.info("build %s waits for %s", ctx.build_id, ", ".join(decision.waiting_for[:5]))
    elif decision.action == "fail":
        finish(
            ctx, store, "failed", failed_stage=decision.failed_stage, error=decision.error, log_tail=log_tail
        )
    elif store.claim_deploy(ctx.build_id, ctx.envelope.id):
        if skip_push or options.get("skip_deploy") or only is not None:
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
