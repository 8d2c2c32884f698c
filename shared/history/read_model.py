"""The run-history read model: the contract between the reporter (writes) and its readers.

The reporter is the only writer of the run history (`services/reporter/history_writer.py`,
idempotent upserts projected from every event on the bus). Everyone else — the gateway's API,
dashboard, SSE history, branch limit and superseding, and the reporter's own report and email —
reads it through this module and nothing else: no reader writes SQL against these tables.

Tables (models in shared/db/models.py), what the reporter writes them from, who reads what:

- `log_build_run` (build_id, package, build_number, status, ref, commit_sha, platforms, options,
  requested/started/finished_at, failed_stage, error, replay_of): from build.requested, .started,
  .finished and each stage's first event. Read by `list_builds`, `build_detail["build"]`,
  `builds_in_flight` (branch limit), `queued_builds` (superseding).
- `log_build_step` (stage, target, platform, status, service, attempt, times, error, log_tail):
  from each stage's started/finished/failed, one row per attempt (a replay's rerun keeps the
  rows before it). Read by `build_detail["steps"]` (each step's newest attempt: the build as it
  stands), `build_detail["attempts"]` (every attempt's own steps and end, the latest first),
  `build_logs` (newest attempt of each step), the reporter's watchdog.
- `log_build_compile_set`, `log_build_compile` (per factory set and module: counts, status,
  duration): from compile.finished. Read by `build_detail["compile"]`, `["modules"]`,
  `latest_compiled_build` (`--skip-compile`).
- `log_build_image` (target, platform, repository, tag, digest, size_bytes, status; platform
  MANIFEST_PLATFORM is a multi-arch index): from image.pushed and the manifest event. Read by
  `build_detail["images"]`, `registry_overview`, `with_index_sizes`.
- `log_build_scan` (counts per severity, verdict, findings, note): from scan.completed.
  Read by `build_detail["scans"]`.
- `log_audit` (mode, target, counts, findings, note): from audit.completed.
  Read by `build_detail["audits"]`.
- `log_build_run.options` of a rollback run (trigger_kind `rollback`, from rollback.requested) also
  holds `rollback_to` (the number) and `rollback_to_build` (the id) of the build it went back to.
  `rollback_target` reads a build by package and number, with whether its deploy succeeded.
- `event_log` (event_id, type, routing_key, source, time, attempt, replay_of, body: the
  CloudEvent as received): every event. Read by `build_events`, `stored_envelopes` (SSE
  history), `find_stage_trigger` (replays), the failure's log tail in `build_detail`.

Times are returned in ISO 8601, rows as plain dicts (`as_dict`). Changing a column these
functions read is a change of this contract: migrate, then change this module and its readers.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shared.db.models import MANIFEST_PLATFORM, BuildImage, BuildRun, BuildStep, EventLog
from shared.events import Envelope, InvalidEvent, decode
from shared.history.diff import build_diff
from shared.history.queries import (
    STAGE_ORDER,
    BuildNotFound,
    as_dict,
    build_detail,
    latest_compiled_build,
    list_builds,
    with_index_sizes,
)
from shared.history.replay import STAGE_TRIGGERS, find_stage_trigger
from shared.platforms import branch_of

__all__ = [
    "IN_FLIGHT",
    "MANIFEST_PLATFORM",
    "STAGE_ORDER",
    "STAGE_TRIGGERS",
    "BuildNotFound",
    "as_dict",
    "build_detail",
    "build_diff",
    "build_events",
    "build_logs",
    "builds_in_flight",
    "event_view",
    "find_stage_trigger",
    "finished_builds",
    "latest_attempt",
    "latest_compiled_build",
    "list_builds",
    "queued_builds",
    "registry_overview",
    "rollback_target",
    "stages_that_ran",
    "stored_envelopes",
    "with_index_sizes",
]

IN_FLIGHT = ("queued", "running")


def _branch_matches(ref: str) -> Any:
    """The history stores a branch as `refs/heads/x` or `x`: match both."""
    return or_(BuildRun.ref == ref, BuildRun.ref == branch_of(ref))


# -- builds in flight (the gateway's branch limit and superseding) ------------------------------


def builds_in_flight(session: Session, keys: Any) -> dict[tuple[str, str], int]:
    """{(package, ref): builds queued or running} for each (package, ref) in `keys`."""
    counts: dict[tuple[str, str], int] = {}
    for package, ref in set(keys):
        counts[(package, ref)] = session.execute(
            select(func.count())
            .select_from(BuildRun)
            .where(BuildRun.package == package, BuildRun.status.in_(IN_FLIGHT), _branch_matches(ref))
        ).scalar_one()
    return counts


def queued_builds(session: Session, package: str, ref: str, newer: list[str]) -> list[str]:
    """Build ids of the branch's builds still queued, other than those in `newer`."""
    rows = session.execute(
        select(BuildRun.build_id).where(
            BuildRun.package == package,
            BuildRun.status == "queued",
            _branch_matches(ref),
            BuildRun.build_id.not_in(newer),
        )
    )
    return list(rows.scalars())


def finished_builds(session: Session, build_ids: list[str]) -> set[str]:
    """Those of `build_ids` the history shows ended (the gateway's concurrency sweep)."""
    rows = session.execute(
        select(BuildRun.build_id).where(BuildRun.build_id.in_(build_ids), BuildRun.status.not_in(IN_FLIGHT))
    )
    return set(rows.scalars())


# -- one build's events and logs ------------------------------------------------------------------


def latest_attempt(session: Session, build_id: str) -> int:
    """The highest attempt any stored event of the build carries (1 for a build never replayed)."""
    return session.scalar(select(func.max(EventLog.attempt)).where(EventLog.build_id == build_id)) or 1


def stages_that_ran(session: Session, build_id: str) -> list[str]:
    """The stages the build has a step of, in pipeline order."""
    names = set(session.scalars(select(BuildStep.stage).where(BuildStep.build_id == build_id).distinct()))
    return sorted(names, key=lambda name: STAGE_ORDER.get(name, len(STAGE_ORDER)))


def build_events(session: Session, build_id: str, *, after_id: int = 0) -> list[dict[str, Any]]:
    rows = session.execute(
        select(EventLog)
        .where(EventLog.build_id == build_id, EventLog.id > after_id)
        .order_by(EventLog.time, EventLog.id)
    ).scalars()
    return [event_view(row) for row in rows]


def stored_envelopes(session: Session, build_id: str) -> list[tuple[Envelope, str]]:
    """A build's stored events as envelopes with their routing keys, in order (SSE history)."""
    rows = session.execute(
        select(EventLog).where(EventLog.build_id == build_id).order_by(EventLog.time, EventLog.id)
    ).scalars()
    envelopes = []
    for row in rows:
        try:
            envelopes.append((decode(row.body.encode()), row.routing_key))
        except InvalidEvent:
            continue
    return envelopes


def event_view(row: EventLog) -> dict[str, Any]:
    try:
        data = json.loads(row.body).get("data", {})
    except (ValueError, AttributeError):
        data = {}
    return {
        "seq": row.id,
        "id": row.event_id,
        "type": row.type,
        "routing_key": row.routing_key,
        "source": row.source,
        "time": row.time.isoformat(),
        "attempt": row.attempt,
        "replayof": row.replay_of,
        "data": data,
    }


def build_logs(session: Session, build_id: str) -> list[str]:
    """The log tails the stages reported, one line each, prefixed with where they came from."""
    lines: list[str] = []
    newest: dict[tuple[str, str, str], BuildStep] = {}  # of each step, its newest attempt
    for row in session.execute(select(BuildStep).where(BuildStep.build_id == build_id)).scalars():
        key = (row.stage, row.target, row.platform)
        if key not in newest or row.attempt > newest[key].attempt:
            newest[key] = row
    steps = sorted(newest.values(), key=lambda s: (STAGE_ORDER.get(s.stage, 99), s.target))
    for step in steps:
        where = "/".join(p for p in (step.stage, step.target, step.platform) if p)
        lines.extend(f"[{where}] {line}" for line in step.log_tail or [])
        if step.error:
            lines.append(f"[{where}] ERROR {step.error}")
    return lines


# -- images across builds ------------------------------------------------------------------------


def registry_overview(session: Session, package: str | None = None) -> list[dict[str, Any]]:
    """The newest pushed image per (package, target, platform), multi-arch indexes included (with
    `platforms_size_bytes`, the sum of their platform images: with_index_sizes)."""
    query = (
        select(BuildImage, BuildRun.package, BuildRun.build_number)
        .join(BuildRun, BuildRun.build_id == BuildImage.build_id)
        .where(BuildImage.status.in_(("pushed", "manifest")))
        .order_by(BuildImage.pushed_at.desc())
    )
    if package:
        query = query.where(BuildRun.package == package)
    rows = [
        {**as_dict(image), "package": pkg, "build_number": number}
        for image, pkg, number in session.execute(query.limit(2000))
    ]
    newest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in with_index_sizes(rows):
        newest.setdefault((row["package"], row["target"], row["platform"]), row)
    return list(newest.values())


# -- rollbacks (the gateway's `POST /packages/{package}/rollback`) -------------------------------


def rollback_target(session: Session, package: str, number: int) -> dict[str, Any] | None:
    """Build `number` of `package` (None if there is none) with `deployed`: whether a deploy step of
    it succeeded, i.e. the deployer released it. Its run row's fields as `build_detail` has them."""
    run = session.execute(
        select(BuildRun).where(BuildRun.package == package, BuildRun.build_number == number)
    ).scalar()
    if run is None:
        return None
    deployed = session.execute(
        select(func.count())
        .select_from(BuildStep)
        .where(
            BuildStep.build_id == run.build_id, BuildStep.stage == "deploy", BuildStep.status == "succeeded"
        )
    ).scalar_one()
    return {**as_dict(run), "deployed": bool(deployed)}
