"""The scanner's ports: what the handlers need from the outside world, nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from services.scanner.image_audit import ImageAudit
from services.scanner.report import ScanReport


class ImageScanner(Protocol):
    def scan_image(self, reference: str, *, vulnerabilities: bool = True) -> ScanReport:
        """Secrets always; vulnerabilities too unless told not to (Harbor supplies them)."""


class AuditScanner(ImageScanner, Protocol):
    def scan_secrets(self, path: str | Path) -> ScanReport: ...

    def scan_config(self, path: str | Path) -> ScanReport: ...

    def scan_dependencies(self, path: str | Path) -> ScanReport: ...


class ImageAuditor(Protocol):
    def audit_image(self, reference: str, modes: Sequence[str]) -> ImageAudit:
        """The audit stage's modes on one pushed image, in one run (services/scanner/image_audit.py)."""


class VulnerabilityRegistry(Protocol):
    """A registry that scans its own artifacts (Harbor)."""

    def vulnerability_report(self, project: str, repository: str, digest: str) -> ScanReport: ...
