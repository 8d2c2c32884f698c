"""What one scan found, independent of the tool that found it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from shared.events.scan import Finding

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
NO_VULN_DB_NOTE = "skipped: no vulnerability database"

VulnDbState = Literal["ok", "skipped"]


class ScanError(Exception):
    """The scan could not produce a trustworthy report; the stage fails, it never passes."""


class ScannerMissing(ScanError):
    """The scanner binary (or service) is not there at all: retrying cannot help."""


class ScannerCrashed(ScanError):
    """The scanner ran and failed (exit status, timeout, unreachable registry): maybe transient."""


class MalformedReport(ScanError):
    """The scanner's output is not the report shape we expect: never read it as 'nothing found'."""


@dataclass(frozen=True)
class ScanReport:
    scanner: Literal["trivy", "harbor"]
    vulnerabilities: tuple[Finding, ...] = ()
    secrets: tuple[Finding, ...] = ()
    misconfigurations: tuple[Finding, ...] = ()
    # "skipped" when no vulnerability database was available: the vulnerability list is then
    # empty because nobody looked, not because nothing is there.
    vuln_db: VulnDbState = "ok"
    notes: tuple[str, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        """Vulnerabilities by severity, every severity present (zeros included)."""
        found = Counter(f.severity for f in self.vulnerabilities)
        return {severity: found.get(severity, 0) for severity in SEVERITIES}

    def merged(self, other: ScanReport) -> ScanReport:
        """Combine two partial scans of one artifact (Harbor's vulnerabilities + Trivy's secrets)."""
        return ScanReport(
            scanner=self.scanner,
            vulnerabilities=self.vulnerabilities + other.vulnerabilities,
            secrets=self.secrets + other.secrets,
            misconfigurations=self.misconfigurations + other.misconfigurations,
            vuln_db="skipped" if "skipped" in (self.vuln_db, other.vuln_db) else "ok",
            notes=self.notes + other.notes,
        )


def normalise_severity(value: object) -> str:
    """Trivy says HIGH, Harbor says High (and Negligible / None): one vocabulary for the gate."""
    text = str(value or "").strip().upper()
    if text == "NEGLIGIBLE":
        return "LOW"
    return text if text in SEVERITIES else "UNKNOWN"
