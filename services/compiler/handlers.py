"""`build.requested` -> stages config, keys, compile -> `compile.completed` -> image requests.

Contract: the handler returns normally for every outcome of a build (succeeded, failed,
cancelled); failures are reported as events. Only a failure to publish escapes, and the bus
retries the message. A redelivered request re-runs the same steps, emitting the same event ids
(ctx.emit derives them), and the compile cache makes the rerun cheap.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from services.compiler.build_stages import CompileOutcome, compile_stage, config_stage, keys_stage
from services.compiler.ports import ArtifactStore, BasePythons, SourceFetcher, TreeCompiler
from services.compiler.reuse import ArtifactIndex
from shared.bus.live_logs import LogShipper
from shared.bus.stage import Emitter, StageFailed, StageRun, finish_stage, stage
from shared.events import BuildFinished, BuildRequested, CompileCompleted

log = logging.getLogger("kiln.compiler")
T = TypeVar("T")


class BuildCancelled(Exception):
    """Raised at a stage boundary of a cancelled build (its next stage reported cancelled)."""


@dataclass(frozen=True)
class BuildSettings:
    """What a build needs from the service's settings."""

    # The repository's own build description, relative to the source root (untrusted).
    config_file: str = "config.yaml"
    # The operator's config (KILN_CONFIG_PATH): destinations, credentials, base images.
    operator_config: str = ""
    work_dir: str | None = None
    default_base_images: Mapping[str, str | None] = field(default_factory=dict)
    # The environment the config overrides are read from (KILN_KEYS_DIR, ...).
    config_env: Mapping[str, str] = field(default_factory=dict)


def on_build_requested(
    event: BuildRequested,
    ctx: Emitter,
    *,
    fetcher: SourceFetcher,
    compiler: TreeCompiler,
    store: ArtifactStore,
    index: ArtifactIndex,
    settings: BuildSettings,
    is_cancelled: Callable[[str, int], bool] = lambda _build, _attempt: False,
    cancel_reason: Callable[[str], str] = lambda _build: "",
    logs: LogShipper | None = None,
    pythons: BasePythons | None = None,
) -> None:
    started = time.monotonic()

    def boundary(next_stage: str) -> None:
        """A cancelled build reports the next stage as cancelled and stops there."""
        if is_cancelled(ctx.build_id, ctx.envelope.attempt):
            reason = cancel_reason(ctx.build_id)
            error = f"cancelled: {reason}" if reason else "cancelled"
            finish_stage(ctx, next_stage, "cancelled", error=error)
            raise BuildCancelled(next_stage)

    def run(name: str, work: Callable[[StageRun], tuple[T, dict]]) -> T:
        """One stage: any exception in it ends it failed (raised on as StageFailed)."""
        boundary(name)
        with stage(ctx, name, logs=logs, package=event.package, fail_on=(Exception,)) as current:
            result, detail = work(current)
            current.detail.update(detail)
        return result

    with tempfile.TemporaryDirectory(prefix="kiln-compile-", dir=settings.work_dir) as scratch:
        work = Path(scratch)
        try:
            prepared = run(
                "config",
                lambda _run: config_stage(
                    event,
                    work,
                    fetcher=fetcher,
                    config_file=settings.config_file,
                    operator_config=settings.operator_config,
                    config_env=settings.config_env,
                    default_base_images=settings.default_base_images,
                ),
            )
            run("keys", lambda _run: keys_stage(event, prepared))
            outcome = run(
                "compile",
                lambda current: compile_stage(
                    event,
                    ctx.build_id,
                    prepared,
                    work,
                    compiler=compiler,
                    store=store,
                    index=index,
                    log=current.log,
                    pythons=pythons,
                ),
            )
            boundary("image")
        except BuildCancelled as cancelled:
            log.info("build %s cancelled before stage %s", ctx.build_id, cancelled)
            return
        except StageFailed as failure:
            _end_failed(ctx, failure, started)
            return
    targets = tuple(plan.target for plan in prepared.images)
    ctx.emit(_completed(outcome, targets))
    artifacts = {a.platform: a for a in outcome.artifacts}
    for plan in prepared.images:
        ctx.emit(plan.request(artifacts[plan.fields["platform"]]))
    log.info("build %s: compiled, %d image(s) requested", ctx.build_id, len(prepared.images))


def _completed(outcome: CompileOutcome, targets: tuple = ()) -> CompileCompleted:
    return CompileCompleted(
        ok=outcome.ok,
        skipped=outcome.skipped,
        modules=outcome.modules,
        sets=outcome.sets,
        artifacts=outcome.artifacts,
        targets=targets,
        duration_ms=outcome.duration_ms,
        source_digest=outcome.source_digest,
        app_config=outcome.app_config,
    )


def _end_failed(ctx: Emitter, failure: StageFailed, started: float) -> None:
    """The compiler ends a build that failed in its stages (the deployer ignores ok=False)."""
    result = getattr(failure, "compile_result", None) or CompileOutcome(ok=False, source_digest="")
    ctx.emit(_completed(result))
    ctx.emit(
        BuildFinished(
            status="failed",
            duration_ms=int((time.monotonic() - started) * 1000),
            failed_stage=failure.stage,
            error=failure.error,
        )
    )
