"""Requirement files read without any tool: which requirements are pinned to one version.

An unpinned requirement is a finding on its own (the image changes without a commit); the
inventory is listed even when no vulnerability database is available.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shared.events.scan import Finding

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")
_PIN = re.compile(r"^===?\s*([^\s,;]+)\s*(;.*)?$")


@dataclass(frozen=True)
class Requirement:
    name: str
    spec: str
    pinned_version: str | None
    file: str
    line: int


def parse_requirements(path: Path, *, shown_as: str | None = None) -> list[Requirement]:
    requirements = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", "git+", "http:", "https:", "file:")):
            continue  # options (-r, -c, --hash…) and direct URLs are not name/version pairs
        match = _NAME.match(line)
        if not match:
            continue
        name, _, spec = match.groups()
        pin = _PIN.match(spec.strip())
        requirements.append(
            Requirement(
                name=name,
                spec=spec.strip(),
                pinned_version=pin.group(1) if pin else None,
                file=shown_as or str(path),
                line=number,
            )
        )
    return requirements


def requirement_findings(requirements: list[Requirement]) -> list[Finding]:
    findings = []
    for req in requirements:
        if req.pinned_version:
            findings.append(
                Finding(
                    id="requirement-pinned",
                    severity="UNKNOWN",
                    package=req.name,
                    installed=req.pinned_version,
                    file=f"{req.file}:{req.line}",
                )
            )
        else:
            findings.append(
                Finding(
                    id="requirement-unpinned",
                    severity="MEDIUM",
                    package=req.name,
                    installed=req.spec or "any",
                    title="not pinned to one version: the image can change without a commit",
                    file=f"{req.file}:{req.line}",
                )
            )
    return findings
