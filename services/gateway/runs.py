"""Reading the run history the reporter writes (log_build_*, event_log): lists, details, events."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import history
from shared.db.models import (
    BuildImage,
    BuildRun,
    BuildStep,
    EventLog,
)
from shared.events import Envelope, InvalidEvent, decode
from shared.history.queries import STAGE_ORDER, as_dict


def list_builds(
    session: Session,
    *,
    package: str | None = None,
    status: str | None = None,
    branch: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The API's `branch` filter is shared.history's `ref` (both spellings of a branch match)."""
    return history.list_builds(
        session, package=package, status=status, ref=branch, limit=limit, offset=offset
    )


def build_detail(session: Session, build_id: str) -> dict[str, Any] | None:
    """shared.history's detail, as the API and dashboard show it: steps in start order within a
    stage (the live timeline), scans as summaries (findings are served per scan, not here)."""
    detail = history.build_detail(session, build_id)
    if detail is None:
        return None
    detail["steps"].sort(key=lambda s: (STAGE_ORDER.get(s["stage"], 99), s["started_at"] or "", s["target"]))
    detail["scans"] = [{k: v for k, v in scan.items() if k != "findings"} for scan in detail["scans"]]
    detail["deploy"] = [s for s in detail["steps"] if s["stage"] in ("deploy", "verify")]
    return detail


def _rows(session: Session, model: Any, build_id: str) -> list[Any]:
    return list(session.execute(select(model).where(model.build_id == build_id)).scalars())


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
    steps = sorted(
        _rows(session, BuildStep, build_id), key=lambda s: (STAGE_ORDER.get(s.stage, 99), s.target)
    )
    for step in steps:
        where = "/".join(p for p in (step.stage, step.target, step.platform) if p)
        lines.extend(f"[{where}] {line}" for line in step.log_tail or [])
        if step.error:
            lines.append(f"[{where}] ERROR {step.error}")
    return lines


def registry_overview(session: Session, package: str | None = None) -> list[dict[str, Any]]:
    """The newest pushed image per (package, target, platform), multi-arch indexes included (with
    `platforms_size_bytes`, the sum of their platform images: shared.history.with_index_sizes)."""
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
    for row in history.with_index_sizes(rows):
        newest.setdefault((row["package"], row["target"], row["platform"]), row)
    return list(newest.values())
