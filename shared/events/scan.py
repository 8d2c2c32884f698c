"""Vulnerability and secret scans of images, and audits of deps, config and source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.base import Event, Model
from shared.events.build import Platform
from shared.events.formats import Digest, Name

Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]


class Finding(Model):
    id: str
    severity: Severity = "UNKNOWN"
    package: str = ""
    installed: str = ""
    fixed: str = ""
    title: str = ""
    # For secrets and misconfigurations: where it was found.
    file: str = ""
    layer: str = ""


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

    mode: Literal["deps", "config", "secrets", "image"]
    target: str = ""
    counts: dict[str, int] = Field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    note: str = ""
