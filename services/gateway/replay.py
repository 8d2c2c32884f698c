"""Replays: the stored event(s) that started a stage, as new envelopes to republish (new id,
`replayof` = the original's id, attempt + 1). Which event starts which stage is
`shared.history.STAGE_TRIGGERS` (shared with the reporter)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.events import Envelope
from shared.history.read_model import find_stage_trigger, latest_attempt, stages_that_ran


class NothingToReplay(Exception):
    pass


def replay_envelopes(
    session: Session, build_id: str, stage: str | None, *, only: bool = False
) -> list[Envelope]:
    if stage is not None:
        ran = stages_that_ran(session, build_id)
        if stage not in ran:
            # Its trigger may be stored (deploy's is compile.completed), but republishing it
            # would rerun what the build never reached: say so instead of printing success.
            reached = ", ".join(ran) or "none"
            raise NothingToReplay(
                f"stage {stage!r} never ran in build {build_id} (stages it ran: {reached}); "
                "replay one of those, or the whole build (no --from)"
            )
    originals = find_stage_trigger(session, build_id, stage or "build")
    if not originals:
        raise NothingToReplay(f"no stored event started stage {stage or 'build'!r} of build {build_id}")
    # Every replay is a new attempt, the build's latest + 1: replaying twice from the same
    # original must not reuse attempt 2 (the gate reopens only for a newer attempt).
    attempt = latest_attempt(session, build_id) + 1
    return [original.replayed(attempt=attempt, only=stage if only else None) for original in originals]
