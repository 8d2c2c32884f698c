"""build-diff: what changed from build A to build B.

Stages and durations, modules changed or newly failing, image size deltas per service and
platform, new and fixed vulnerabilities, and configuration differences where the history has
them (build options, source, and the `config` stage's detail).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.history.queries import BuildNotFound, build_detail

FAILED_MODULE = ("error",)
RUN_SETTINGS = ("package", "version", "ref", "commit_sha", "platforms", "options", "host_arch", "host_os")


def build_diff(session: Session, build_a: str, build_b: str) -> dict[str, Any]:
    details = []
    for build_id in (build_a, build_b):
        detail = build_detail(session, build_id)
        if detail is None:
            raise BuildNotFound(build_id)
        details.append(detail)
    a, b = details
    return {
        "a": a["build"],
        "b": b["build"],
        "status": _pair(a["build"]["status"], b["build"]["status"]),
        "duration_ms": _pair(a["build"]["duration_ms"], b["build"]["duration_ms"]),
        "stages": _stages(a["steps"], b["steps"]),
        "modules": _modules(a["modules"], b["modules"]),
        "images": _images(a["images"], b["images"]),
        "vulnerabilities": _vulnerabilities(a["scans"], b["scans"]),
        "config": _config(a, b),
    }


def _pair(old: Any, new: Any) -> dict[str, Any]:
    change: dict[str, Any] = {"a": old, "b": new, "changed": old != new}
    if isinstance(old, int) and isinstance(new, int) and not isinstance(old, bool):
        change["delta"] = new - old
    return change


def _stages(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(step: dict[str, Any]) -> tuple[str, str, str]:
        return step["stage"], step["target"], step["platform"]

    old, new = {key(s): s for s in left}, {key(s): s for s in right}
    order = [key(s) for s in left] + [key(s) for s in right if key(s) not in old]
    return [
        {
            "stage": k[0],
            "target": k[1],
            "platform": k[2],
            "status": _pair(old.get(k, {}).get("status"), new.get(k, {}).get("status")),
            "duration_ms": _pair(old.get(k, {}).get("duration_ms"), new.get(k, {}).get("duration_ms")),
        }
        for k in order
    ]


def _modules(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    def key(m: dict[str, Any]) -> tuple[str, str]:
        return m["module"], m["platform"]

    old, new = {key(m): m for m in left}, {key(m): m for m in right}
    changed, newly_failing, fixed = [], [], []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        row = {"module": k[0], "platform": k[1], "a": a and a["status"], "b": b and b["status"]}
        if b is not None and b["status"] in FAILED_MODULE and (a is None or a["status"] not in FAILED_MODULE):
            newly_failing.append({**row, "error": b["error"], "file": b["file"], "line": b["line"]})
        elif (
            a is not None and a["status"] in FAILED_MODULE and (b is None or b["status"] not in FAILED_MODULE)
        ):
            fixed.append(row)
        elif (a and a["status"]) != (b and b["status"]):
            changed.append(row)
    return {"changed": changed, "newly_failing": newly_failing, "fixed": fixed}


def _images(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> list[dict[str, Any]]:
    old = {(i["target"], i["platform"]): i for i in left}
    new = {(i["target"], i["platform"]): i for i in right}
    rows = []
    for target, platform in sorted(old.keys() | new.keys()):
        a, b = old.get((target, platform), {}), new.get((target, platform), {})
        rows.append(
            {
                "target": target,
                "platform": platform,
                "size_bytes": _pair(a.get("size_bytes"), b.get("size_bytes")),
                "digest": _pair(a.get("digest"), b.get("digest")),
                "status": _pair(a.get("status"), b.get("status")),
            }
        )
    return rows


def _vulnerabilities(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """By (finding id, package, target, platform): in B only = new, in A only = fixed."""

    def findings(scans: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
        out = {}
        for scan in scans:
            for f in scan.get("findings") or []:
                if f.get("id", "").startswith(("CVE-", "GHSA-")) or f.get("package"):
                    k = (f["id"], f.get("package", ""), scan["target"], scan["platform"])
                    out[k] = {"id": f["id"], "severity": f.get("severity"), "package": f.get("package"),
                              "target": scan["target"], "platform": scan["platform"]}  # fmt: skip
        return out

    old, new = findings(left), findings(right)
    return {
        "new": [new[k] for k in sorted(new.keys() - old.keys())],
        "fixed": [old[k] for k in sorted(old.keys() - new.keys())],
    }


def _config(a: dict[str, Any], b: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Only the settings that differ; the `config` stage detail is compared key by key."""
    out = {
        name: _pair(a["build"].get(name), b["build"].get(name))
        for name in RUN_SETTINGS
        if a["build"].get(name) != b["build"].get(name)
    }
    detail_a, detail_b = _config_detail(a["steps"]), _config_detail(b["steps"])
    for name in sorted(detail_a.keys() | detail_b.keys()):
        if detail_a.get(name) != detail_b.get(name):
            out[f"config.{name}"] = _pair(detail_a.get(name), detail_b.get(name))
    return out


def _config_detail(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return next((s.get("detail") or {} for s in steps if s["stage"] == "config"), {})
