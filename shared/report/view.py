"""A build's history (`shared.history.build_detail`) -> the values the report templates show.

Pure: no I/O, so the same view feeds the email, its text part and (later) the gateway's page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db.models import MANIFEST_PLATFORM
from shared.report.audit_view import audit_rows, audit_verdict
from shared.stages import STAGES, StageSpec, label_of

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
NOT_RECORDED = "-"


def report_view(detail: dict[str, Any], *, build_url: str) -> dict[str, Any]:
    build = detail["build"]
    steps = step_order(detail["steps"])
    images = [i for i in detail["images"] if i["platform"] != MANIFEST_PLATFORM]
    pushed = [i for i in images if i["status"] == "pushed"]
    scans = detail["scans"]
    totals = {sev: sum(s[sev] or 0 for s in scans) for sev in (*SEVERITIES, "secrets")}
    modules = detail["modules"]
    return {
        "build": build,
        "title": f"{build['package']} #{build['build_number'] or '?'} {build['status']}",
        "build_url": build_url,
        "status": build["status"],
        "short_commit": (build.get("commit_sha") or "")[:10],
        "duration": human_duration(build.get("duration_ms")),
        "kpis": [
            {"label": "Status", "value": build["status"].upper(), "tone": _tone(build["status"])},
            {"label": "Duration", "value": human_duration(build.get("duration_ms")), "tone": "neutral"},
            {"label": "Stages passed", "value": _stage_score(steps), "tone": "neutral"},
            {"label": "Modules compiled", "value": _module_score(modules), "tone": _module_tone(modules)},
            {
                "label": "Images",
                "value": f"{len(pushed)} · {human_size(sum(i['size_bytes'] or 0 for i in pushed))}",
                "tone": "bad" if len(pushed) < len(images) else "neutral",
            },
            {
                "label": "Critical / High",
                "value": f"{totals['critical']} / {totals['high']}",
                "tone": "bad" if totals["critical"] else "warn" if totals["high"] else "good",
            },
        ],
        "timeline": timeline(build, steps),
        "compile": _compile_rows(detail),
        "compile_reused_from": detail["compile_from"]
        if detail["compile_from"] != build["build_id"]
        else None,
        "failed_modules": [m for m in modules if m["status"] == "error"][:20],
        "image_grid": _image_grid(images),
        "scans": [{**s, "tone": "good" if s["verdict"] == "pass" else "bad"} for s in scans],
        "scan_totals": totals,
        "registry": _registry(detail["images"]),
        "failure": detail["failure"],
        "attempts": attempt_rows(detail.get("attempts") or []),
        **_audit(detail.get("audits") or []),
    }


def attempt_rows(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A replayed build's attempts, the latest first (as the read model gives them): where each
    reran from, how it ended, how long it took, how many of its steps failed. None for a build
    that ran once: its one attempt is the whole report."""
    if len(attempts) < 2:
        return []
    return [
        {
            "attempt": a["attempt"],
            "status": a["status"],
            "tone": _tone(a["status"]),
            "from_stage": label_of(a["from_stage"]) if a["from_stage"] else NOT_RECORDED,
            "duration": human_duration(a.get("duration_ms")),
            "steps": len(a["steps"]),
            "failed": sum(1 for s in a["steps"] if s["status"] == "failed"),
            "error": a.get("error"),
        }
        for a in attempts
    ]


def _audit(audits: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit block's values (templates audit.html.j2 / audit.txt.j2)."""
    rows = audit_rows(audits)
    return {"audits": rows, "audit_verdict": audit_verdict(rows)}


def step_order(steps: list[dict[str, Any]], stages: tuple[StageSpec, ...] = STAGES) -> list[dict[str, Any]]:
    """Steps in pipeline order (the spec's), then by image; a stage the spec no longer knows last."""
    order = {spec.name: index for index, spec in enumerate(stages)}
    return sorted(steps, key=lambda s: (order.get(s["stage"], len(order)), s["target"], s["platform"]))


def timeline(
    build: dict[str, Any], steps: list[dict[str, Any]], stages: tuple[StageSpec, ...] = STAGES
) -> list[dict[str, Any]]:
    """One bar per step, placed on the build's time axis (percent offset and width), labelled
    with the stage's label from the spec."""
    spans = []
    for step in steps:
        start, end = _time(step.get("started_at")), _time(step.get("finished_at"))
        took = (step.get("duration_ms") or 0) / 1000
        if start is None and end is not None:
            start = end - took
        if start is not None and end is not None:
            # Stages report their own duration; trust it over clocks of different machines.
            end = max(end, start + took)
        spans.append((step, start, end))
    origin = _time(build.get("started_at")) or _time(build.get("requested_at"))
    known = [s for _, s, _ in spans if s is not None]
    t0 = min([*known, origin]) if origin is not None else min(known, default=0.0)
    ends = [e for _, _, e in spans if e is not None]
    t1 = max([*ends, t0 + 0.001])
    width = max(t1 - t0, 0.001)
    rows = []
    for step, start, end in spans:
        s = (start if start is not None else t0) - t0
        e = (end if end is not None else t1) - t0
        label = " ".join(
            p
            for p in (
                label_of(step["stage"], stages),
                step["target"],
                step["platform"].removeprefix("linux/"),
            )
            if p
        )
        rows.append(
            {
                "label": label,
                "status": step["status"],
                "tone": _tone(step["status"]),
                "offset_pct": round(100 * s / width, 1),
                "width_pct": max(round(100 * (e - s) / width, 1), 0.8),
                "duration": human_duration(step.get("duration_ms")),
                "summary": _summary(step),
            }
        )
    return rows


def _summary(step: dict[str, Any]) -> str | None:
    """A stage's own one-line summary (`detail.summary`, e.g. the attest stage's SBOM package
    count and signatures): any stage can show one without a template change."""
    summary = (step.get("detail") or {}).get("summary")
    return summary[:200] if isinstance(summary, str) and summary else None


def human_size(size: int | None) -> str:
    if size is None:
        return NOT_RECORDED
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def human_duration(ms: int | None) -> str:
    if ms is None:
        return NOT_RECORDED
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def _time(value: str | datetime | None) -> float | None:
    if value is None:
        return None
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).timestamp()


def _tone(status: str) -> str:
    return {"succeeded": "good", "failed": "bad", "cancelled": "warn", "skipped": "neutral"}.get(
        status, "info"
    )


def _stage_score(steps: list[dict[str, Any]]) -> str:
    done = sum(s["status"] in ("succeeded", "skipped") for s in steps)
    return f"{done} / {len(steps)}"


def _module_score(modules: list[dict[str, Any]]) -> str:
    good = sum(m["status"] in ("ok", "cached", "fallback") for m in modules)
    return f"{good} / {len(modules)}" if modules else NOT_RECORDED


def _module_tone(modules: list[dict[str, Any]]) -> str:
    return "bad" if any(m["status"] == "error" for m in modules) else "neutral"


def _compile_rows(detail: dict[str, Any]) -> dict[str, Any]:
    matrix = detail["compile"]
    rows = []
    for factory in matrix["factories"]:
        cells = []
        for platform in matrix["platforms"]:
            cell = matrix["cells"].get(f"{factory}|{platform}")
            if cell:
                cell = {**cell, "duration": human_duration(cell["duration_ms"]),
                        "tone": "bad" if cell["failed"] else "good"}  # fmt: skip
            cells.append(cell)
        rows.append({"factory": factory, "cells": cells})
    return {"platforms": matrix["platforms"], "rows": rows}


def _image_grid(images: list[dict[str, Any]]) -> dict[str, Any]:
    platforms = sorted({i["platform"] for i in images})
    by_key = {(i["target"], i["platform"]): i for i in images}
    rows = []
    for target in sorted({i["target"] for i in images}):
        cells = []
        for platform in platforms:
            image = by_key.get((target, platform))
            if image is not None:
                short_digest = (image["digest"] or "")[7:19]
                image = {**image, "size": human_size(image["size_bytes"]), "short_digest": short_digest,
                         "tone": _image_tone(image)}  # fmt: skip
            cells.append(image)
        rows.append({"target": target, "cells": cells})
    return {"platforms": platforms, "rows": rows}


def _image_tone(image: dict[str, Any]) -> str:
    return "good" if image["status"] == "pushed" else "bad"


def _registry(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is in the registry after this build: each repository:tag and its digest."""
    return [
        {
            "reference": f"{i['repository']}:{i['tag']}",
            "digest": i["digest"],
            "kind": "multi-arch index" if i["platform"] == MANIFEST_PLATFORM else i["platform"],
        }
        for i in sorted(images, key=lambda i: (i["target"], i["platform"]))
        if i["status"] in ("pushed", "manifest")
    ]
