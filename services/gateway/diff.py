"""Build diff: what changed between two builds (durations, image sizes and digests, scan counts).

Written in the gateway because `shared.history.build_diff` did not exist yet; same shape intended.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from services.gateway.runs import build_detail

_STEP_KEY = ("stage", "target", "platform")
_SEVERITIES = ("critical", "high", "medium", "low", "unknown", "secrets")


class BuildNotFound(Exception):
    pass


def build_diff(session: Session, a: str, b: str) -> dict[str, Any]:
    left, right = build_detail(session, a), build_detail(session, b)
    for build_id, detail in ((a, left), (b, right)):
        if detail is None:
            raise BuildNotFound(build_id)
    assert left is not None and right is not None
    return {
        "a": left["build"],
        "b": right["build"],
        "duration_ms": _pair(left["build"]["duration_ms"], right["build"]["duration_ms"]),
        "stages": _by_key(left["steps"], right["steps"], _STEP_KEY, ("status", "duration_ms")),
        "images": _by_key(left["images"], right["images"], ("target", "platform"), ("size_bytes", "digest")),
        "scans": _by_key(left["scans"], right["scans"], ("target", "platform"), (*_SEVERITIES, "verdict")),
    }


def _pair(old: Any, new: Any) -> dict[str, Any]:
    change: dict[str, Any] = {"a": old, "b": new}
    if isinstance(old, int) and isinstance(new, int):
        change["delta"] = new - old
    return change


def _by_key(
    left: list[dict[str, Any]], right: list[dict[str, Any]], key: tuple[str, ...], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    old = {tuple(row[k] for k in key): row for row in left}
    new = {tuple(row[k] for k in key): row for row in right}
    rows = []
    for ident in sorted(old.keys() | new.keys()):
        a, b = old.get(ident, {}), new.get(ident, {})
        values = {f: _pair(a.get(f), b.get(f)) for f in fields}
        rows.append(
            {
                **dict(zip(key, ident, strict=True)),
                "only_in": "a" if not b else "b" if not a else None,
                "changed": any(v["a"] != v["b"] for v in values.values()),
                **values,
            }
        )
    return rows
