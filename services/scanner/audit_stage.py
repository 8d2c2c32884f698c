"""The audit stage: the package's audit modes on one pushed image, each mode's gate verdict.

Runs after the scan of the same `image.pushed` when the package's operator config has
`audit.modes`. Emits `stage.started`, one `audit.completed` per mode (with the image, platform,
digest and verdict; the reporter stores it in `log_audit`), then `stage.finished`: `failed` when a
mode in `fail_on` fails, which the deploy gate reads as the image's `audit` fact.

A mode's verdict: `report` when it is not in `fail_on`; otherwise `fail` when a finding is at or
above its `fail_at` severity, or when the mode could not look at everything (trivy failed, no
vulnerability database for deps/image: never a pass unseen), else `pass`.

Secrets are named by rule id, file, line and layer only: the parser never copies trivy's `Match`
or `Code`, so no value reaches an event, a log line, the email or the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from services.scanner.audit import AuditResult
from services.scanner.image_audit import MODE_OF_CLASS, PACKAGE_MODES, ImageAudit
from services.scanner.ports import ImageAuditor
from services.scanner.report import NO_VULN_DB_NOTE, SEVERITIES, ScanError
from shared.bus import EventContext
from shared.bus.stage import stage
from shared.config import AuditConfig
from shared.events import ImagePushed
from shared.events.scan import AuditCompleted, AuditMode, Finding
from shared.naming import digest_ref

log = logging.getLogger("kiln.scanner.audit")

STAGE = "audit"
MAX_FINDINGS_IN_EVENT = 200  # as the scan's (services/scanner/handlers.py)
IMAGE_CONFIG = "image config"  # a finding's `file` when it is in the image config (ENV, USER, …)
Verdict = Literal["pass", "fail", "report"]


def run_audit_stage(
    event: ImagePushed,
    ctx: EventContext,
    *,
    auditor: ImageAuditor,
    config: AuditConfig,
    refused: str | None = None,
) -> None:
    """`refused`: why the image may not be pulled (the scan's pull-source check); every mode then
    reports that instead of running."""
    reference = digest_ref(event.repository, event.digest)
    with stage(ctx, STAGE, target=event.target, platform=event.platform) as run:
        modes: list[AuditMode] = list(config.modes)
        if refused:
            results = [_not_run(mode, reference, refused) for mode in modes]
        else:
            try:
                results = results_by_mode(auditor.audit_image(reference, modes), modes, reference)
            except ScanError as exc:
                log.error("audit of %s %s could not run: %s", event.target, event.platform, exc)
                results = [_not_run(mode, reference, f"audit failed: {exc}") for mode in modes]
        verdicts = {r.mode: mode_verdict(r, config) for r in results}
        where = {"image": event.target, "platform": event.platform, "digest": event.digest}
        for result in results:
            run.emit_with_verdict(_capped(result.event(**where, verdict=verdicts[result.mode])))
        failing = [r for r in results if verdicts[r.mode] == "fail"]
        run.detail.update(
            modes={r.mode: {"counts": r.counts(), "verdict": verdicts[r.mode]} for r in results},
            counts=_totals([r for r in results if config.gates(r.mode)]),  # what the gate counted
            blocking=[f.id for r in failing for f in failing_findings(r, config)][:20],
            summary=summary(results, verdicts),
        )
        if failing:
            run.fail("; ".join(failure_reason(r, config) for r in failing))


def results_by_mode(audit: ImageAudit, modes: Sequence[AuditMode], reference: str) -> list[AuditResult]:
    """One AuditResult per asked mode, in the order asked; a mode with no result class found
    nothing (e.g. no Python package in the image)."""
    out = []
    for mode in modes:
        mine = [r for r in audit.results if MODE_OF_CLASS.get(r.kind) == mode]
        if mode == "secrets":
            findings = tuple(f for r in mine for f in r.secrets)
        elif mode == "config":
            findings = tuple(f for r in mine for f in r.misconfigurations)
        else:
            findings = tuple(f for r in mine for f in r.vulnerabilities)
        # Image-config results are named after the image itself: say what they are instead.
        findings = tuple(
            f.model_copy(update={"file": IMAGE_CONFIG}) if f.file == reference else f for f in findings
        )
        extra: tuple[tuple[str, int], ...] = ()
        note, complete = "", True
        if mode in PACKAGE_MODES:
            extra = (("packages", sum(r.packages for r in mine)),)
            if not audit.vulnerabilities_checked:
                note, complete = audit.note or NO_VULN_DB_NOTE, False
        result = AuditResult(mode, reference, findings, note=note, extra_counts=extra, complete=complete)
        out.append(result)
    return out


def mode_verdict(result: AuditResult, config: AuditConfig) -> Verdict:
    if not config.gates(result.mode):
        return "report"
    if not result.complete or failing_findings(result, config):
        return "fail"
    return "pass"


def failing_findings(result: AuditResult, config: AuditConfig) -> tuple[Finding, ...]:
    return tuple(f for f in result.findings if config.fails(result.mode, f.severity))


def failure_reason(result: AuditResult, config: AuditConfig) -> str:
    failing = failing_findings(result, config)
    if not failing:
        return f"{result.mode}: not audited ({result.note}); a mode in fail_on fails unless it can look"
    floor = config.fail_at.get(result.mode)
    where = ", ".join(describe(f) for f in failing[:5])
    more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
    threshold = f" at or above {floor}" if floor else ""
    return f"{result.mode}: {len(failing)} finding(s){threshold} ({where}{more})"


def describe(finding: Finding) -> str:
    """Rule id and where; never the matched text (the Finding has none)."""
    place = finding.file + (f":{finding.line}" if finding.line else "")
    subject = finding.package + (f" {finding.installed}" if finding.installed else "")
    return " ".join(p for p in (finding.id, f"at {place}" if place else "", subject) if p)


def worst_severity(counts: dict[str, int]) -> str | None:
    return next((s for s in SEVERITIES if counts.get(s)), None)


def summary(results: Sequence[AuditResult], verdicts: dict[str, Verdict]) -> str:
    """One line for the timeline, e.g. `secrets 1 found, worst CRITICAL fail · deps clean, 12
    packages, not fully audited report`."""
    parts = []
    for r in results:
        counts = r.counts()
        found = len(r.findings)
        worst = worst_severity(counts)
        what = f"{found} found, worst {worst}" if worst else "clean"
        if "packages" in counts:
            what += f", {counts['packages']} packages"
        if not r.complete:
            what += ", not fully audited"
        parts.append(f"{r.mode} {what} {verdicts[r.mode]}")
    return " · ".join(parts)


def _capped(event: AuditCompleted) -> AuditCompleted:
    """Events stay small (the scan's cap): the counts keep every finding, the list the first ones."""
    left_out = len(event.findings) - MAX_FINDINGS_IN_EVENT
    if left_out <= 0:
        return event
    note = "; ".join(n for n in (event.note, f"{left_out} more findings not listed in this event") if n)
    return event.model_copy(update={"findings": event.findings[:MAX_FINDINGS_IN_EVENT], "note": note})


def _totals(results: Sequence[AuditResult]) -> dict[str, int]:
    return {s: sum(r.counts().get(s, 0) for r in results) for s in SEVERITIES}


def _not_run(mode: AuditMode, reference: str, reason: str) -> AuditResult:
    return AuditResult(mode=mode, target=reference, findings=(), note=reason, complete=False)
