"""What a service reports when the bus dead-letters one of its events after reading it.

Without a report, a build whose stage gave up (a poison message, a permanent error, retries
exhausted) would wait forever for that stage. With one, it ends with the stage and the reason.
"""

from __future__ import annotations

from shared.bus.context import EventContext
from shared.bus.dispatch import GiveUp
from shared.events import BuildFinished, Event
from shared.logging import REDACT


def end_build_failed(stage: str) -> GiveUp:
    """A report that ends the event's build as failed at `stage`, naming the reason."""

    def report(event: Event | None, ctx: EventContext, reason: str) -> None:
        error = REDACT(f"{ctx.source} gave up on {ctx.envelope.type} {ctx.envelope.id}: {reason}")
        ctx.emit(BuildFinished(status="failed", failed_stage=stage, error=error[:4000]))

    return report
