"""Running one stage of a build: StageStarted, the work, StageFinished with timing and detail.

Any exception in a stage ends as that stage failed (never a crashed worker); the error text is
redacted before it goes into an event. While a stage runs, `runner.log` is its live log stream
(shared/bus/live_logs.py), closed before its StageFinished so its last lines arrive first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from shared.bus.live_logs import LineSink, LogShipper, discard
from shared.events import Event, StageFinished, StageStarted
from shared.logging import REDACT

log = logging.getLogger("kiln.compiler")
T = TypeVar("T")
# Events carry errors, not novels: the head of a long message names the problem.
MAX_ERROR_CHARS = 4000


class Emitter(Protocol):
    build_id: str

    def emit(self, event: Event) -> Any: ...


class StageFailed(Exception):
    """A stage failed; `error` goes into StageFinished and BuildFinished, `detail` into StageFinished."""

    def __init__(self, error: str, detail: dict[str, Any] | None = None, *, compile_result: Any = None):
        super().__init__(error)
        self.error = error
        self.detail = detail or {}
        # For stage compile: the per-module results to report in CompileCompleted(ok=False).
        self.compile_result = compile_result
        self.stage = ""


class BuildCancelled(Exception):
    pass


class StageRunner:
    def __init__(
        self,
        ctx: Emitter,
        is_cancelled: Callable[[str], bool],
        cancel_reason: Callable[[str], str],
        *,
        logs: LogShipper | None = None,
        package: str = "",
    ):
        self._ctx = ctx
        self._is_cancelled = is_cancelled
        self._cancel_reason = cancel_reason
        self._logs = logs
        self._package = package
        self.log: LineSink = discard  # the running stage's live log lines

    def stop_if_cancelled(self, next_stage: str) -> None:
        """At a stage boundary: a cancelled build reports the next stage as cancelled and stops."""
        if self._is_cancelled(self._ctx.build_id):
            reason = self._cancel_reason(self._ctx.build_id)
            self._ctx.emit(
                StageFinished(
                    stage=next_stage,
                    status="cancelled",
                    error=f"cancelled: {reason}" if reason else "cancelled",
                )
            )
            raise BuildCancelled(next_stage)

    def run(self, stage: str, work: Callable[[], tuple[T, dict[str, Any]]]) -> T:
        """`work` returns (result, detail); it raises StageFailed to fail the stage with a reason."""
        self.stop_if_cancelled(stage)
        self._ctx.emit(StageStarted(stage=stage))
        started = time.monotonic()
        try:
            with self._live_log(stage):
                result, detail = work()
        except StageFailed as failure:
            failure.stage = stage
            failure.error = clean_error(failure.error)
            self._finish(stage, started, "failed", failure.detail, failure.error)
            raise
        except Exception as exc:
            log.exception("stage %s of build %s failed unexpectedly", stage, self._ctx.build_id)
            failure = StageFailed(clean_error(f"unexpected {type(exc).__name__}: {exc}"))
            failure.stage = stage
            self._finish(stage, started, "failed", {}, failure.error)
            raise failure from exc
        self._finish(stage, started, "succeeded", detail, None)
        return result

    @contextmanager
    def _live_log(self, stage: str) -> Iterator[None]:
        if self._logs is None:
            yield
            return
        with self._logs.stream(self._ctx.build_id, stage=stage, package=self._package) as stream:
            self.log = stream
            try:
                yield
            finally:
                self.log = discard

    def _finish(self, stage: str, started: float, status: str, detail: dict, error: str | None) -> None:
        self._ctx.emit(
            StageFinished(
                stage=stage,
                status=status,  # type: ignore[arg-type]
                duration_ms=int((time.monotonic() - started) * 1000),
                detail=detail,
                error=error,
            )
        )


def clean_error(text: str) -> str:
    text = REDACT(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 20] + "\n… (truncated)"
