"""The gates, as pure functions: a package's scan policy applied to one ScanReport.

Rules, in order:
1. Secret gate: any secret in an image fails it, whatever the policy (keys are mounted, never baked in).
2. Allow-list: a vulnerability id listed in `scan.allow` does not count while `today <= expires`;
   from the day after `expires` it counts again.
3. `ignore_unfixed`: vulnerabilities without a fixed version do not count.
4. `max`: per severity, more counted findings than the maximum fail the gate, and every counted
   finding of that severity is blocking. A severity absent from `max` is unlimited.
5. No vulnerability database: the report says so; `require_vuln_db` makes it a failure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from services.scanner.report import NO_VULN_DB_NOTE, SEVERITIES, ScanReport
from shared.config.sections import ScanPolicy
from shared.events.scan import Finding

NO_VULN_DB_FINDING = Finding(id="no-vulnerability-database", severity="UNKNOWN", title=NO_VULN_DB_NOTE)


@dataclass(frozen=True)
class Verdict:
    verdict: Literal["pass", "fail"]
    # The findings that failed the gate: what a person must act on.
    blocking: tuple[Finding, ...]
    # One line per broken rule, e.g. "HIGH: 7 > max 5".
    reasons: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "within policy"


def active_allow_ids(policy: ScanPolicy, today: dt.date) -> dict[str, str]:
    """Allow-listed ids still in force today, with their reason."""
    return {entry.id: entry.reason for entry in policy.allow if today <= entry.expires}


def expired_allow_notes(policy: ScanPolicy, today: dt.date) -> tuple[str, ...]:
    return tuple(
        f"allow-list entry {entry.id} expired on {entry.expires.isoformat()}: it counts again"
        for entry in policy.allow
        if today > entry.expires
    )


def allowed_notes(report: ScanReport, policy: ScanPolicy, today: dt.date) -> tuple[str, ...]:
    """Why a finding present in the image did not count: the report and email say so."""
    present = {f.id for f in report.vulnerabilities}
    return tuple(
        f"{entry.id} allowed until {entry.expires.isoformat()}: {entry.reason}"
        for entry in policy.allow
        if entry.id in present and today <= entry.expires
    )


def counted_vulnerabilities(report: ScanReport, policy: ScanPolicy, today: dt.date) -> tuple[Finding, ...]:
    allowed = active_allow_ids(policy, today)
    return tuple(
        finding
        for finding in report.vulnerabilities
        if finding.id not in allowed and not (policy.ignore_unfixed and not finding.fixed)
    )


def evaluate(report: ScanReport, policy: ScanPolicy, today: dt.date) -> Verdict:
    blocking: list[Finding] = []
    reasons: list[str] = []
    notes: list[str] = list(report.notes) + list(expired_allow_notes(policy, today))

    if report.secrets:
        blocking.extend(report.secrets)
        where = ", ".join(_secret_location(s) for s in report.secrets[:5])
        reasons.append(f"secrets: {len(report.secrets)} found ({where})")

    counted = counted_vulnerabilities(report, policy, today)
    notes.extend(allowed_notes(report, policy, today))
    for severity in SEVERITIES:
        limit = policy.max.get(severity)
        if limit is None:
            continue
        of_severity = [f for f in counted if f.severity == severity]
        if len(of_severity) > limit:
            blocking.extend(of_severity)
            reasons.append(f"{severity}: {len(of_severity)} > max {limit}")

    if report.vuln_db == "skipped":
        notes.insert(0, NO_VULN_DB_NOTE)
        if policy.require_vuln_db:
            blocking.append(NO_VULN_DB_FINDING)
            reasons.append(f"{NO_VULN_DB_NOTE} (scan.require_vuln_db is true)")

    return Verdict(
        verdict="fail" if reasons else "pass",
        blocking=tuple(blocking),
        reasons=tuple(reasons),
        notes=tuple(dict.fromkeys(notes)),
    )


def _secret_location(secret: Finding) -> str:
    layer = f" in layer {secret.layer}" if secret.layer else ""
    return f"{secret.id} at {secret.file}{layer}"
