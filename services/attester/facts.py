"""What a build knows about itself, read from its stored events: the provenance's facts.

The attester reads `event_log` (shared.db.models.EventLog: every event verbatim, written by the
reporter) rather than trusting anything in the image.pushed it attests: the source and commit
come from the build's own build.requested, the base image, tier and requirements hash from the
image.requested of that target and platform, the compiled tree from compile.completed. The
reporter writes in batches (≤ 100 ms), so a fact not stored yet is a transient error: the bus
retries the message with back-off, it never attests with a guess.

The config digest is the sha256 of the package's operator config (KILN_CONFIG_PATH) as the
attester loads it, canonical JSON: the configuration the build ran under, to the extent the
config did not change between compile and attest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.attester.ports import BuildFactsFn, Subject
from services.attester.provenance import BuildFacts
from shared.bus import TransientError
from shared.db.models import EventLog
from shared.events import (
    BuildRequested,
    CompileCompleted,
    ImageRequested,
    InvalidEvent,
    decode,
)

# The stored events the facts come from (image.requested carries the architecture as its last word).
EXACT_KEYS = (BuildRequested.base_routing_key(), CompileCompleted.base_routing_key())
JOB_KEYS = f"{ImageRequested.base_routing_key()}.%"


def config_digest_from(config_path: str | None) -> Callable[[str], str]:
    def digest(package: str) -> str:
        if not config_path:
            return ""
        from shared.config import load_config

        dumped = load_config(config_path).package(package).model_dump(mode="json")
        return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()

    return digest


def facts_from_history(sessions: sessionmaker[Session], config_digest: Callable[[str], str]) -> BuildFactsFn:
    def build_facts(build_id: str, subject: Subject) -> BuildFacts:
        requested, compiled, jobs = _stored(sessions, build_id)
        if requested is None:
            raise TransientError(f"build {build_id}: its build.requested is not in the event log yet")
        target, platform = subject.target, subject.platform
        job = next(
            (j for j in jobs if j.target == target and (platform is None or j.platform == platform)),
            None,
        )
        if job is None:
            raise TransientError(
                f"build {build_id}: no image.requested of {target} {platform or ''} stored yet"
            )
        artifact = next(
            (a.reference for a in (compiled.artifacts if compiled else ()) if a.platform == job.platform),
            None,
        )
        package = requested.package
        return BuildFacts(
            build_id=build_id,
            build_number=requested.build_number or 0,
            package=package,
            source_repository=requested.source.repo_url or requested.source.path or "",
            ref=requested.source.ref,
            commit=requested.source.commit or job.commit,
            config_digest=config_digest(package),
            started_on=requested_time(sessions, build_id),
            finished_on=dt.datetime.now(dt.UTC),
            compiler_image=artifact if artifact and "@sha256:" in artifact else None,
            base_image=job.base_image if "@sha256:" in job.base_image else None,
            tier_requirements={job.tier: job.requirements_hash} if job.tier and job.requirements_hash else {},
        )

    return build_facts


def _stored(
    sessions: sessionmaker[Session], build_id: str
) -> tuple[BuildRequested | None, CompileCompleted | None, list[ImageRequested]]:
    requested, compiled, jobs = None, None, []
    with sessions() as session:
        rows = session.scalars(
            select(EventLog)
            .where(EventLog.build_id == build_id)
            .where(
                EventLog.routing_key.in_(EXACT_KEYS) | EventLog.routing_key.like(JOB_KEYS),
            )
            .order_by(EventLog.time, EventLog.id)
        ).all()
    for row in rows:
        try:
            event = decode(row.body.encode()).event()
        except InvalidEvent:
            continue
        # The latest of each wins: a replayed attempt's events describe what was rebuilt.
        if isinstance(event, BuildRequested):
            requested = event
        elif isinstance(event, CompileCompleted):
            compiled = event
        elif isinstance(event, ImageRequested):
            jobs = [j for j in jobs if (j.target, j.platform) != (event.target, event.platform)] + [event]
    return requested, compiled, jobs


def requested_time(sessions: sessionmaker[Session], build_id: str) -> dt.datetime:
    with sessions() as session:
        moment = session.scalars(
            select(EventLog.time)
            .where(EventLog.build_id == build_id, EventLog.routing_key == EXACT_KEYS[0])
            .order_by(EventLog.time)
        ).first()
    return (moment or dt.datetime.now(dt.UTC)).replace(tzinfo=dt.UTC)
