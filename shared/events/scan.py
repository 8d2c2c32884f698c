"""Vulnerability and secret scans of images, and audits of deps, config and source."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from shared.events.base import Event, Model
from shared.events.build import Platform
from shared.events.formats import Digest, Name

Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
# The audit modes, in the order they run and are shown (config `audit.modes`, services/scanner/audit.py).
AuditMode = Literal["deps", "config", "secrets", "image"]
AUDIT_MODES: tuple[AuditMode, ...] = get_args(AuditMode)


class Finding(Model):
    id: str
    severity: Severity = "UNKNOWN"
    package: str = ""
    installed: str = ""
    fixed: str = ""
    title: str = ""
    # For secrets and misconfigurations: where it was found (never what: no matched text).
    file: str = ""
    layer: str = ""
    line: int | None = None


class ScanCompleted(Event):
    subject = "scan"
    predicate = "completed"

    target: Name
    platform: Platform
    digest: Digest
    scanner: Literal["trivy", "harbor"]
    counts: dict[str, int] = Field(default_factory=dict)
    verdict: Literal["pass", "fail"]
    # Findings that failed the policy (the ones a person must act on).
    blocking: tuple[Finding, ...] = ()
    findings: tuple[Finding, ...] = ()
    secrets: tuple[Finding, ...] = ()
    vuln_db: Literal["ok", "skipped"] = "ok"
    note: str = ""


class AuditCompleted(Event):
    subject = "audit"
    predicate = "completed"

    mode: AuditMode
    target: str = ""  # what was audited: a path (CLI) or the image reference repository@digest
    counts: dict[str, int] = Field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    note: str = ""
    # Within the pipeline's audit stage (one event per pushed image and mode): which image, and
    # the mode's gate verdict: `fail` (in fail_on, a finding at or above fail_at, or the audit
    # could not run), `pass` (in fail_on, nothing that fails), `report` (not in fail_on).
    image: Name | None = None
    platform: Platform | None = None
    digest: Digest | None = None
    verdict: Literal["pass", "fail", "report"] = "report"
