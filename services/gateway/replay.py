"""Replays: the stored event(s) that started a stage, as new envelopes to republish (new id,
`replayof` = the original's id, attempt + 1). Which event starts which stage is
`shared.history.STAGE_TRIGGERS` (shared with the reporter)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared.events import Envelope
from shared.history.read_model import find_stage_trigger


class NothingToReplay(Exception):
    pass


def replay_envelopes(session: Session, build_id: str, stage: str | None) -> list[Envelope]:
    originals = find_stage_trigger(session, build_id, stage or "build")
    if not originals:
        raise NothingToReplay(f"no stored event started stage {stage or 'build'!r} of build {build_id}")
    return [original.replayed() for original in originals]
