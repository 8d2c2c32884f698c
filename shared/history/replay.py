"""Which stored event started a stage: what a replay republishes (new id, `replayof`, attempt + 1).

Each stage's `trigger` in shared.stages says which (`build`, the whole build: build.requested).
Today:

| stage                                   | started by                  |
|-----------------------------------------|-----------------------------|
| config, keys, compile (and `build`)     | build.requested             |
| image, push                             | image.requested.<arch> (one per target and platform) |
| scan, audit                             | image.pushed (one per image) |
| topology, scaffold, deploy, verify, docs | compile.completed (the deployer's gate waits for scans) |

Only original events count (`replay_of IS NULL`), so replaying twice republishes the same origin.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.db.models import EventLog
from shared.events import Envelope, InvalidEvent, decode
from shared.stages import ARCH, BUILD_REQUESTED, STAGES, StageSpec


def stage_triggers(stages: tuple[StageSpec, ...] = STAGES) -> dict[str, tuple[str, ...]]:
    """Stage name -> the routing keys (`*` for one architecture) of the events that started it;
    `build` (the whole build) is started by build.requested."""
    triggers = {"build": (BUILD_REQUESTED,)}
    return triggers | {spec.name: (spec.trigger.replace(ARCH, "*"),) for spec in stages}


STAGE_TRIGGERS: dict[str, tuple[str, ...]] = stage_triggers()


def find_stage_trigger(session: Session, build_id: str, stage: str) -> list[Envelope]:
    """The original events that started `stage` of `build_id`, in event order ([] if none stored)."""
    keys = STAGE_TRIGGERS.get(stage)
    if keys is None:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGE_TRIGGERS)}")
    matches = [
        EventLog.routing_key.like(key.replace("*", "%")) if "*" in key else EventLog.routing_key == key
        for key in keys
    ]
    rows = session.scalars(
        select(EventLog)
        .where(EventLog.build_id == build_id, EventLog.replay_of.is_(None), or_(*matches))
        .order_by(EventLog.time, EventLog.id)
    )
    envelopes = []
    for row in rows:
        try:
            envelopes.append(decode(row.body.encode()))
        except InvalidEvent:  # stored by an older catalogue and no longer readable: cannot replay it
            continue
    return envelopes
