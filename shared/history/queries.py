"""Listing builds and one build's full record, as plain dicts (JSON-ready: times in ISO 8601)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from shared.db.models import (
    MANIFEST_PLATFORM,
    Audit,
    BuildCompile,
    BuildCompileSet,
    BuildImage,
    BuildRun,
    BuildScan,
    BuildStep,
    EventLog,
)
from shared.platforms import branch_of, ref_of
from shared.stages import STAGE_ORDER, stages_of

# The deploy section of a build's record: the deployer's stages that report a result event.
DEPLOY_STEPS = frozenset(spec.name for spec in stages_of("deployer") if spec.emits)


class BuildNotFound(LookupError):
    pass


def as_dict(row: Any, *, exclude: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    values = {}
    for column in row.__table__.columns:
        if column.key not in exclude:
            value = getattr(row, column.key)
            values[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return values


def list_builds(
    session: Session,
    package: str | None = None,
    status: str | None = None,
    ref: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Newest first. `ref` matches `main` and `refs/heads/main` alike."""
    query = select(BuildRun)
    if package:
        query = query.where(BuildRun.package == package)
    if status:
        query = query.where(BuildRun.status == status)
    if ref:
        name = branch_of(ref)
        query = query.where(or_(BuildRun.ref == name, BuildRun.ref == ref_of(name)))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(BuildRun.requested_at.desc(), BuildRun.id.desc()).limit(limit).offset(offset)
    )
    return {"total": total, "limit": limit, "offset": offset, "builds": [as_dict(r) for r in rows]}


def build_detail(session: Session, build_id: str) -> dict[str, Any] | None:
    """Everything the report and the dashboard show about one build; None if unknown."""
    run = session.scalars(select(BuildRun).where(BuildRun.build_id == build_id)).one_or_none()
    if run is None:
        return None
    build = as_dict(run)
    every_attempt = [as_dict(s) for s in _rows(session, BuildStep, build_id)]
    steps = current_steps(every_attempt)
    compile_from = build_id
    if (build.get("options") or {}).get("skip_compile"):
        compile_from = latest_compiled_build(session, run.package, before=run.requested_at) or build_id
    sets = [as_dict(s) for s in _rows(session, BuildCompileSet, compile_from)]
    modules = [as_dict(m) for m in _rows(session, BuildCompile, compile_from)]
    images = with_index_sizes([as_dict(i) for i in _rows(session, BuildImage, build_id)])
    scans = [as_dict(s) for s in _rows(session, BuildScan, build_id)]
    audits = [as_dict(a) for a in _rows(session, Audit, build_id)]
    return {
        "build": build,
        "steps": steps,
        "compile": _compile_matrix(sets),
        "compile_from": compile_from,
        "modules": sorted(modules, key=lambda m: (m["factory"], m["module"], m["platform"])),
        "images": sorted(images, key=lambda i: (i["target"], i["platform"])),
        "scans": sorted(scans, key=lambda s: (s["target"], s["platform"])),
        "audits": audits,
        "attempts": _attempts(session, build_id, every_attempt),
        "deploy": [s for s in steps if s["stage"] in DEPLOY_STEPS],
        "failure": _failure(session, build, steps),
    }


def _step_order(step: dict[str, Any]) -> tuple:
    return (STAGE_ORDER.get(step["stage"], 99), step["target"], step["platform"])


def current_steps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The build as it stands: of each step (stage, target, platform), its newest attempt's row.
    A replay from deploy reruns deploy and verify; the config, compile and image rows it did not
    rerun stay those of the attempt that ran them."""
    newest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["stage"], row["target"], row["platform"])
        if key not in newest or (row["attempt"] or 1) > (newest[key]["attempt"] or 1):
            newest[key] = row
    return sorted(newest.values(), key=_step_order)


def _attempts(session: Session, build_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every attempt, the latest first: its own steps, where it started (its first stage), and
    how it ended (its build.finished: status, error), or `running` while it has none yet."""
    finished: dict[int, dict[str, Any]] = {}
    for attempt, body in session.execute(
        select(EventLog.attempt, EventLog.body)
        .where(EventLog.build_id == build_id, EventLog.routing_key == "build.finished")
        .order_by(EventLog.time, EventLog.id)
    ):
        data = json.loads(body).get("data", {})
        finished[attempt or 1] = data  # the last one of an attempt wins, as in log_build_run
    numbers = sorted({row["attempt"] or 1 for row in rows} | set(finished), reverse=True)
    attempts = []
    for number in numbers:
        steps = sorted((r for r in rows if (r["attempt"] or 1) == number), key=_step_order)
        end = finished.get(number, {})
        attempts.append(
            {
                "attempt": number,
                "status": end.get("status", "running"),
                "from_stage": steps[0]["stage"] if steps else None,
                "error": end.get("error"),
                "duration_ms": end.get("duration_ms"),
                "started_at": min((s["started_at"] for s in steps if s["started_at"]), default=None),
                "finished_at": max((s["finished_at"] for s in steps if s["finished_at"]), default=None),
                "steps": steps,
            }
        )
    return attempts


def with_index_sizes(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each multi-arch index row (platform MANIFEST_PLATFORM, `size_bytes` None: the index
    itself is a few hundred bytes of JSON) `platform_sizes`, the sizes of the platform images of
    the same build and target, and `platforms_size_bytes`, their sum: what the tag stands for."""
    sizes: dict[tuple[str, str], dict[str, int]] = {}
    for image in images:
        if image["platform"] != MANIFEST_PLATFORM and image["status"] == "pushed" and image["size_bytes"]:
            key = (image["build_id"], image["target"])
            sizes.setdefault(key, {})[image["platform"]] = image["size_bytes"]
    for image in images:
        if image["platform"] == MANIFEST_PLATFORM:
            platforms = dict(sorted(sizes.get((image["build_id"], image["target"]), {}).items()))
            image["platform_sizes"] = platforms
            image["platforms_size_bytes"] = sum(platforms.values()) if platforms else None
    return images


def latest_compiled_build(session: Session, package: str, before: datetime | None = None) -> str | None:
    """The most recent build of `package` that has compile results (what `--skip-compile` reuses)."""
    query = (
        select(BuildRun.build_id)
        .join(BuildCompileSet, BuildCompileSet.build_id == BuildRun.build_id)
        .where(BuildRun.package == package)
    )
    if before is not None:
        query = query.where(BuildRun.requested_at < before)
    return session.scalar(query.order_by(BuildRun.requested_at.desc()).limit(1))


def _failure(session: Session, build: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    if build["status"] not in ("failed", "cancelled"):
        return None
    failed = [s for s in steps if s["status"] in ("failed", "cancelled")]
    step = next((s for s in failed if s["stage"] == build["failed_stage"]), failed[0] if failed else None)
    tail = list((step or {}).get("log_tail") or []) or _finished_log_tail(session, build["build_id"])
    return {
        "stage": build["failed_stage"] or (step or {}).get("stage"),
        "target": (step or {}).get("target") or None,
        "platform": (step or {}).get("platform") or None,
        "error": build["error"] or (step or {}).get("error"),
        "log_tail": tail[-50:],
    }


def _finished_log_tail(session: Session, build_id: str) -> list[str]:
    body = session.scalar(
        select(EventLog.body)
        .where(EventLog.build_id == build_id, EventLog.routing_key == "build.finished")
        .order_by(EventLog.time.desc())
        .limit(1)
    )
    return list(json.loads(body)["data"].get("log_tail", [])) if body else []


def _compile_matrix(sets: list[dict[str, Any]]) -> dict[str, Any]:
    """Per factory set and platform: modules, ok, failed, cached, duration (keys `factory|platform`)."""
    factories = sorted({s["factory"] for s in sets})
    platforms = sorted({s["platform"] for s in sets})
    cells = {f"{s['factory']}|{s['platform']}": s for s in sets}
    return {"factories": factories, "platforms": platforms, "cells": cells}


def _rows(session: Session, model: Any, build_id: str) -> list[Any]:
    return list(session.scalars(select(model).where(model.build_id == build_id)))
