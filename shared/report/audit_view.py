"""The audit stage's rows (`build_detail["audits"]`, from log_audit) as the email and the dashboard
show them: per image and mode, the finding count, the worst severity, the gate verdict, and the
first findings by rule id and place. Findings hold no matched text (the scanner never copies it),
so nothing here can show a secret's value."""

from __future__ import annotations

from typing import Any, get_args

from shared.events.scan import AUDIT_MODES, Severity

MODE_ORDER: tuple[str, ...] = AUDIT_MODES
SEVERITIES: tuple[str, ...] = get_args(Severity)
SHOWN_FINDINGS = 5
VERDICT_TONE = {"fail": "bad", "pass": "good", "report": "neutral"}


def audit_rows(audits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [_row(audit) for audit in audits]
    return sorted(rows, key=lambda r: (r["image"], r["platform"], _mode_index(r["mode"])))


def audit_verdict(rows: list[dict[str, Any]]) -> str | None:
    """The stage's verdict over every image: fail if a gating mode failed, pass if some mode
    gated, report if none did; None without audits."""
    verdicts = {row["verdict"] for row in rows}
    for verdict in ("fail", "pass", "report"):
        if verdict in verdicts:
            return verdict
    return None


def _row(audit: dict[str, Any]) -> dict[str, Any]:
    counts = audit.get("counts") or {}
    findings = audit.get("findings") or []
    verdict = audit.get("verdict") or "report"
    worst = next((s for s in SEVERITIES if counts.get(s)), None)
    return {
        "image": audit.get("image") or audit.get("target") or "",
        "platform": audit.get("platform") or "",
        "mode": audit["mode"],
        "found": sum(counts.get(s, 0) for s in SEVERITIES),
        "worst": worst or "-",
        "packages": counts.get("packages"),
        "verdict": verdict,
        "tone": VERDICT_TONE.get(verdict, "neutral"),
        "note": (audit.get("note") or "")[:300],
        "findings": [_finding(f) for f in findings[:SHOWN_FINDINGS]],
        "more": max(0, len(findings) - SHOWN_FINDINGS),
    }


def _finding(finding: dict[str, Any]) -> dict[str, str]:
    place = str(finding.get("file") or "")
    if finding.get("line"):
        place += f":{finding['line']}"
    subject = " ".join(str(finding.get(k) or "") for k in ("package", "installed")).strip()
    return {
        "id": str(finding.get("id") or ""),
        "severity": str(finding.get("severity") or "UNKNOWN"),
        "where": place,
        "what": subject or str(finding.get("title") or "")[:120],
    }


def _mode_index(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)
