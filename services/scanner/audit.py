"""The four audit modes: deps (tier requirements), config (generated Dockerfiles, Helm chart,
compose files), secrets (the source tree) and image. Each yields one AuditResult, printed by the
CLI and, within a build, emitted as `audit.completed` (the reporter stores it in `log_audit`)."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.scanner.adapters.trivy import SKIPPED_SOURCE_DIRS
from services.scanner.ports import AuditScanner
from services.scanner.report import SEVERITIES
from services.scanner.requirements_audit import parse_requirements, requirement_findings
from shared.config import KilnConfig
from shared.events.scan import AUDIT_MODES, AuditCompleted, AuditMode, Finding

MODES: tuple[AuditMode, ...] = AUDIT_MODES


@dataclass(frozen=True)
class AuditResult:
    mode: AuditMode
    target: str
    findings: tuple[Finding, ...]
    note: str = ""
    extra_counts: tuple[tuple[str, int], ...] = ()
    # False: part of what the mode audits was not looked at (no vulnerability database, or the
    # audit could not run; `note` says why). A gating mode then fails: never a pass unseen.
    complete: bool = True

    def counts(self) -> dict[str, int]:
        found = Counter(f.severity for f in self.findings)
        return {**{s: found.get(s, 0) for s in SEVERITIES}, **dict(self.extra_counts)}

    def serious(self) -> bool:
        """A secret anywhere, or any HIGH/CRITICAL finding: the CLI exits 1."""
        if self.mode == "secrets" and self.findings:
            return True
        return any(f.severity in ("CRITICAL", "HIGH") for f in self.findings)

    def event(self, **image: Any) -> AuditCompleted:
        """`image`: the audit stage's image, platform, digest and verdict (AuditCompleted)."""
        return AuditCompleted(
            mode=self.mode,
            target=self.target,
            counts=self.counts(),
            findings=self.findings[:500],
            note=self.note,
            **image,
        )


def tier_requirement_files(config: KilnConfig | None, root: Path) -> dict[str, Path]:
    """`{shown name: file}`: the tiers' files from config, else every requirements*.txt and
    requirements/*.txt under root."""
    if config is not None:
        return {
            f"{tier}:{name}": root / name for tier, spec in config.tiers.items() for name in spec.requirements
        }
    skipped = set(SKIPPED_SOURCE_DIRS)
    candidates = {*root.rglob("requirements*.txt"), *root.rglob("requirements/*.txt")}
    found = sorted(p for p in candidates if not set(p.relative_to(root).parts) & skipped)
    return {str(p.relative_to(root)): p for p in found}


def audit_deps(scanner: AuditScanner, root: Path, config: KilnConfig | None) -> AuditResult:
    files = tier_requirement_files(config, root)
    missing = [f"{shown} ({path})" for shown, path in files.items() if not path.is_file()]
    present = {shown: path for shown, path in files.items() if path.is_file()}
    requirements = [r for shown, p in present.items() for r in parse_requirements(p, shown_as=shown)]
    inventory = requirement_findings(requirements)
    # trivy's pip analyzer only reads files named requirements.txt: one directory per file.
    with tempfile.TemporaryDirectory(prefix="kiln-deps-") as staging:
        for index, path in enumerate(present.values()):
            (Path(staging) / f"{index:03d}").mkdir()
            shutil.copyfile(path, Path(staging) / f"{index:03d}" / "requirements.txt")
        report = scanner.scan_dependencies(staging)
    labels = {f"{index:03d}/requirements.txt": shown for index, shown in enumerate(present)}
    vulns = [v.model_copy(update={"file": labels.get(v.file, v.file)}) for v in report.vulnerabilities]
    notes = [*report.notes, *(f"missing requirements file {m}" for m in missing)]
    pinned = sum(1 for r in requirements if r.pinned_version)
    return AuditResult(
        mode="deps",
        target=str(root),
        findings=(*vulns, *inventory),
        note="; ".join(notes),
        extra_counts=(("pinned", pinned), ("unpinned", len(requirements) - pinned)),
    )


def audit_config(scanner: AuditScanner, path: Path) -> AuditResult:
    report = scanner.scan_config(path)
    return AuditResult(mode="config", target=str(path), findings=report.misconfigurations)


def audit_secrets(scanner: AuditScanner, path: Path) -> AuditResult:
    report = scanner.scan_secrets(path)
    return AuditResult(mode="secrets", target=str(path), findings=report.secrets)


def audit_image(scanner: AuditScanner, reference: str) -> AuditResult:
    report = scanner.scan_image(reference)
    return AuditResult(
        mode="image",
        target=reference,
        findings=(*report.secrets, *report.vulnerabilities),
        note="; ".join(report.notes),
    )
