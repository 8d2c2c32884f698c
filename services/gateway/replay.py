"""Replays: find the stored event that started a stage and republish it (new id, replayof, attempt+1).

`shared/history` (the reporter's `find_stage_trigger`) did not exist when this was written, so
the gateway queries event_log itself; the mapping below is the contract either way.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.db.models import EventLog
from shared.events import Envelope, InvalidEvent, decode

# stage → routing keys of the events that start it (`image.requested.*` is per architecture)
STAGE_TRIGGERS: dict[str, tuple[str, ...]] = {
    "build": ("build.requested",),
    "config": ("build.requested",),
    "keys": ("build.requested",),
    "compile": ("build.requested",),
    "image": ("image.requested.*",),
    "push": ("image.requested.*",),
    "scan": ("image.pushed",),
    "audit": ("image.pushed",),
    "topology": ("compile.completed", "scan.completed"),
    "scaffold": ("compile.completed", "scan.completed"),
    "deploy": ("compile.completed", "scan.completed"),
    "verify": ("compile.completed", "scan.completed"),
    "docs": ("compile.completed", "scan.completed"),
}


class NothingToReplay(Exception):
    pass


def find_stage_trigger(session: Session, build_id: str, stage: str) -> list[Envelope]:
    """The original (not replayed) events that started `stage` of `build_id`, in order."""
    keys = STAGE_TRIGGERS.get(stage)
    if keys is None:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGE_TRIGGERS)}")
    matches = [
        EventLog.routing_key.like(key.replace("*", "%")) if "*" in key else EventLog.routing_key == key
        for key in keys
    ]
    rows = session.execute(
        select(EventLog)
        .where(EventLog.build_id == build_id, EventLog.replay_of.is_(None), or_(*matches))
        .order_by(EventLog.time, EventLog.id)
    ).scalars()
    envelopes = []
    for row in rows:
        try:
            envelopes.append(decode(row.body.encode()))
        except InvalidEvent:  # a stored event our catalogue no longer reads cannot be replayed
            continue
    return envelopes


def replay_envelopes(session: Session, build_id: str, stage: str | None) -> list[Envelope]:
    originals = find_stage_trigger(session, build_id, stage or "build")
    if not originals:
        raise NothingToReplay(f"no stored event started stage {stage or 'build'!r} of build {build_id}")
    return [original.replayed() for original in originals]
