"""One stage run's lifecycle, written once: StageStarted, the work, StageFinished.

    with stage(ctx, "scan", target=event.target, platform=event.platform) as run:
        ...                     # run.log(line): live log lines (shared/bus/live_logs.py)
        run.detail["digest"] = digest
        run.fail(reason)        # or run.cancelled(reason) / run.skip(reason); default: succeeded

On enter it emits StageStarted and opens the stage's live log stream; on exit it closes the
stream (so the last lines go out before the verdict) and emits StageFinished with the status, the
duration, `run.detail`, the error and the log tail. Error text and tail lines are redacted
(shared.logging.REDACT) and capped: events carry errors, not novels.

Exceptions: one of the `fail_on` types (default StageFailed only) ends the stage `failed` and is
raised on as a StageFailed (with `.stage` set) unless `reraise=False`. Any other exception
escapes untouched and emits no StageFinished: the bus retries the message, and because
`ctx.emit` derives event ids from the cause and the emit order, the retry re-emits the same ids
(a StageFinished(failed) sent before the retry would take the id the retry's verdict needs).

A stage that never starts (cancelled or skipped at a boundary, or one whose verdict comes from
elsewhere) is reported with `finish_stage`: a StageFinished without a StageStarted, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from shared.bus.live_logs import LineSink, LogShipper, discard
from shared.events import Event, StageFinished, StageStarted
from shared.logging import REDACT
from shared.stages import STAGE_NAMES

log = logging.getLogger("kiln.bus.stage")

MAX_ERROR_CHARS = 4000
LOG_TAIL_LINES = 50


class Emitter(Protocol):
    """What a stage needs of its handler's context (EventContext, the imager's JobContext)."""

    build_id: str

    def emit(self, event: Event) -> Any: ...


class StageFailed(Exception):
    """Raised in a stage body to fail it: `error` goes into StageFinished, `detail` too."""

    def __init__(self, error: str, detail: dict[str, Any] | None = None):
        super().__init__(error)
        self.error = error
        self.detail = detail or {}
        self.stage = ""  # set by `stage` when it ends the stage


class StageRun:
    """The running stage, as the body sees it."""

    def __init__(self, name: str, where: dict[str, str]):
        self.name = name
        self.where = where
        self.detail: dict[str, Any] = {}
        self.log: LineSink = discard  # the stage's live log lines, while it runs
        self.status = "succeeded"
        self.error: str | None = None
        self.log_tail: tuple[str, ...] = ()
        self.started = time.monotonic()
        self.with_verdict: list[Event] = []

    def emit_with_verdict(self, event: Event) -> None:
        """Emit `event` at the end, after the live log closed, just before the StageFinished
        (the imager's image.failed, the scanner's scan.completed go out in that order)."""
        self.with_verdict.append(event)

    def fail(self, error: str, *, detail: dict[str, Any] | None = None, log_tail: Iterable[str] = ()) -> None:
        """End the stage `failed` (when the body ends); the error and tail are cleaned here."""
        self.status = "failed"
        self.error = clean_error(error)
        self.log_tail = clean_tail(log_tail)
        if detail:
            self.detail.update(detail)

    def cancelled(self, reason: str = "") -> None:
        self.status = "cancelled"
        self.error = clean_error(reason) if reason else None

    def skip(self, reason: str = "") -> None:
        self.status = "skipped"
        if reason:
            self.detail["reason"] = reason

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def duration_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


@contextmanager
def stage(
    ctx: Emitter,
    name: str,
    *,
    target: str | None = None,
    platform: str | None = None,
    logs: LogShipper | None = None,
    package: str = "",
    fail_on: tuple[type[BaseException], ...] = (StageFailed,),
    reraise: bool = True,
) -> Iterator[StageRun]:
    """Run one stage; see the module docstring. `logs`: ship the body's `run.log` lines live."""
    where = _where(name, target, platform)
    ctx.emit(StageStarted(stage=name, **where))
    run = StageRun(name, where)
    failure: StageFailed | None = None
    try:
        with _live_log(run, ctx, logs, package):
            yield run
    except fail_on as exc:
        failure = _as_failure(exc, run, ctx.build_id)
        run.fail(failure.error, detail=failure.detail)
        failure.error = run.error or ""
    _emit_finished(ctx, run)
    if failure is not None and reraise:
        raise failure


def finish_stage(
    ctx: Emitter,
    name: str,
    status: str,
    *,
    target: str | None = None,
    platform: str | None = None,
    error: str | None = None,
    detail: dict[str, Any] | None = None,
    log_tail: Iterable[str] = (),
    duration_ms: int = 0,
) -> None:
    """A StageFinished for a stage that did not start here (cancelled/skipped at a boundary)."""
    ctx.emit(
        StageFinished(
            stage=name,
            status=status,  # type: ignore[arg-type]
            duration_ms=duration_ms,
            detail=detail or {},
            error=error,
            log_tail=tuple(log_tail),
            **_where(name, target, platform),
        )
    )


def clean_error(text: str) -> str:
    text = REDACT(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 20] + "\n… (truncated)"


def clean_tail(lines: Iterable[str]) -> tuple[str, ...]:
    return tuple(REDACT(line) for line in list(lines)[-LOG_TAIL_LINES:])


def _where(name: str, target: str | None, platform: str | None) -> dict[str, str]:
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r} (shared/stages.py declares {', '.join(STAGE_NAMES)})")
    where = {}
    if target is not None:
        where["target"] = target
    if platform is not None:
        where["platform"] = platform
    return where


def _as_failure(exc: BaseException, run: StageRun, build_id: str) -> StageFailed:
    if isinstance(exc, StageFailed):
        failure = exc
    else:
        log.exception("stage %s of build %s failed unexpectedly", run.name, build_id)
        failure = StageFailed(f"unexpected {type(exc).__name__}: {exc}")
        failure.__cause__ = exc
    failure.stage = run.name
    return failure


@contextmanager
def _live_log(run: StageRun, ctx: Emitter, logs: LogShipper | None, package: str) -> Iterator[None]:
    if logs is None:
        yield
        return
    package = package or getattr(ctx, "package", "")
    with logs.stream(ctx.build_id, stage=run.name, package=package, **run.where) as stream:
        run.log = stream
        try:
            yield
        finally:
            run.log = discard


def _emit_finished(ctx: Emitter, run: StageRun) -> None:
    for event in run.with_verdict:
        ctx.emit(event)
    ctx.emit(
        StageFinished(
            stage=run.name,
            status=run.status,  # type: ignore[arg-type]
            duration_ms=run.duration_ms(),
            detail=run.detail,
            error=run.error,
            log_tail=run.log_tail,
            **run.where,
        )
    )
