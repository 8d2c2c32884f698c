"""Human-readable lines for a build's events: the CLI's per-stage progress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.stages import (
    BUILD_FINISHED,
    BUILD_REQUESTED,
    BUILD_WAITING,
    CANCEL_REQUESTED,
    ROLLBACK_REQUESTED,
    STAGE_FINISHED,
    STAGE_STARTED,
    stage_emitting,
)

STATUS_MARK = {"succeeded": "✓", "failed": "✗", "skipped": "-", "cancelled": "⊘", "started": "▶"}
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3}


def describe(routing_key: str, event: dict[str, Any]) -> str | None:
    """One line for events worth showing; None for the rest."""
    data = event.get("data", {})
    where = " ".join(str(data[k]) for k in ("target", "platform") if data.get(k))
    where = f" [{where}]" if where else ""
    if routing_key == BUILD_REQUESTED:
        source = data.get("source", {})
        number = data.get("build_number")
        ref = source.get("ref", "")
        return f"build {event.get('buildid')} {data.get('package')} #{number} requested ({ref})"
    if routing_key == ROLLBACK_REQUESTED:
        return (
            f"build {event.get('buildid')} {data.get('package')} #{data.get('build_number')} requested: "
            f"rollback to #{data.get('to_number')}"
        )
    if routing_key == BUILD_WAITING:
        behind = f"build {data.get('waiting_on')} (#{data.get('waiting_on_number')})"
        return (
            f"build {event.get('buildid')} {data.get('package')} #{data.get('build_number')} waiting "
            f"for a slot behind {behind} (concurrency limit {data.get('limit')})"
        )
    if routing_key == STAGE_STARTED:
        return f"  {STATUS_MARK['started']} {data.get('stage')}{where} started"
    if routing_key == STAGE_FINISHED:
        status = data.get("status", "?")
        took = _seconds(data.get("duration_ms"))
        line = f"  {STATUS_MARK.get(status, '?')} {data.get('stage')}{where} {status} in {took}"
        return line + (f": {data['error']}" if data.get("error") else "")
    if routing_key in RESULT_LINES:
        return RESULT_LINES[routing_key](data, where)
    if routing_key == CANCEL_REQUESTED:
        return f"  ⊘ cancel requested: {data.get('reason', '')}"
    if routing_key == BUILD_FINISHED:
        failed = f" at {data['failed_stage']}" if data.get("failed_stage") else ""
        return f"build {data.get('status')}{failed} in {_seconds(data.get('duration_ms'))}" + (
            f": {data['error']}" if data.get("error") else ""
        )
    return None


def _image_pushed(data: dict[str, Any], where: str) -> str:
    return f"    image{where} pushed {data.get('digest', '')[:19]} ({_megabytes(data.get('size_bytes'))})"


def _scan_verdict(data: dict[str, Any], where: str) -> str:
    return f"    scan{where} {data.get('verdict')} {data.get('counts', {})}"


def _audit_verdict(data: dict[str, Any], where: str) -> str:
    # `target` of an audit is the image reference; the image and platform name it shorter.
    image = " ".join(str(data[k]) for k in ("image", "platform") if data.get(k))
    counts = {k: v for k, v in (data.get("counts") or {}).items() if v}
    return f"    audit {data.get('mode')}{f' [{image}]' if image else where} {data.get('verdict')} {counts}"


# A stage's result worth a line of its own, keyed by the routing key the stage emits (a unit
# test checks each key is in some stage's `emits`, shared.stages).
RESULT_LINES: dict[str, Callable[[dict[str, Any], str], str]] = {
    "image.pushed": _image_pushed,
    "scan.completed": _scan_verdict,
    "audit.completed": _audit_verdict,
}
IMAGE_FAILED = "image.failed"


class LogFollower:
    """`kiln logs -f` over a build's event stream: live lines (`log`) as the stages print them, each
    stage's ERROR, and a stage's stored tail only where its live lines were not seen here (it ran
    before we connected, or the lines were lost), so nothing is printed twice."""

    def __init__(self) -> None:
        self._shown: set[str] = set()  # stage runs whose output is already on screen

    def lines(self, key: str, event: dict[str, Any]) -> list[str]:
        data = event.get("data", {})
        if key == "log":
            where = _where(data)
            self._shown.add(where)
            return [f"[{where}] {line}" for line in data.get("lines", ())]
        if key == IMAGE_FAILED:  # the same tail as its stage's stage.finished
            data = {**data, "stage": stage_emitting(IMAGE_FAILED).name}
        if key not in (STAGE_FINISHED, BUILD_FINISHED, IMAGE_FAILED):
            return []
        where = _where(data) or key
        lines = [] if where in self._shown else [f"[{where}] {line}" for line in data.get("log_tail", ())]
        self._shown.add(where)
        if data.get("error") and key != IMAGE_FAILED:
            lines.append(f"[{where}] ERROR {data['error']}")
        return lines


def _where(data: dict[str, Any]) -> str:
    return "/".join(str(data[k]) for k in ("stage", "target", "platform") if data.get(k))


def _seconds(ms: Any) -> str:
    return f"{(ms or 0) / 1000:.1f}s"


def _megabytes(size: Any) -> str:
    return f"{(size or 0) / 1_000_000:.1f} MB"
