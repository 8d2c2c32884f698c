"""Requirement files read without tools, and the vulnerability-database bookkeeping."""

from __future__ import annotations

import datetime as dt
import json

from services.scanner.adapters.trivy_db import TrivyDatabase
from services.scanner.audit import AuditResult
from services.scanner.requirements_audit import parse_requirements, requirement_findings
from shared.events.scan import Finding


def test_pinned_and_unpinned_requirements(tmp_path):
    path = tmp_path / "web.txt"
    path.write_text(
        "# web tier\n"
        "flask==3.0.0\n"
        "uvicorn[standard]==0.29.0 ; python_version >= '3.11'\n"
        "requests>=2,<3  # any 2.x\n"
        "httpx\n"
        "-r base.txt\n"
        "--hash=sha256:abc\n"
        "git+https://example.invalid/x.git\n"
        "legacy===1.0\n"
    )
    requirements = parse_requirements(path, shown_as="web:requirements/web.txt")
    assert [(r.name, r.pinned_version) for r in requirements] == [
        ("flask", "3.0.0"),
        ("uvicorn", "0.29.0"),
        ("requests", None),
        ("httpx", None),
        ("legacy", "1.0"),
    ]
    findings = requirement_findings(requirements)
    assert [f.id for f in findings].count("requirement-unpinned") == 2
    unpinned = next(f for f in findings if f.package == "httpx")
    assert (unpinned.severity, unpinned.installed, unpinned.file) == (
        "MEDIUM",
        "any",
        "web:requirements/web.txt:5",
    )


def test_audit_result_counts_and_seriousness():
    result = AuditResult(
        mode="config",
        target=".",
        findings=(Finding(id="DS-0026", severity="LOW"), Finding(id="DS-0002", severity="HIGH")),
    )
    assert result.counts() == {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 0, "LOW": 1, "UNKNOWN": 0}
    assert result.serious()
    assert AuditResult(
        mode="secrets", target=".", findings=(Finding(id="generic", severity="LOW"),)
    ).serious()
    assert not AuditResult(mode="deps", target=".", findings=(Finding(id="x", severity="MEDIUM"),)).serious()
    assert result.event().mode == "config"


def test_database_presence_and_age(tmp_path):
    db = TrivyDatabase("trivy", tmp_path, repository=None, download=False, timeout_s=5)
    assert not db.present()
    assert not db.ensure()  # no download allowed, nothing there: scans report "skipped"
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "trivy.db").write_bytes(b"x")
    (tmp_path / "db" / "metadata.json").write_text(json.dumps({"NextUpdate": "2026-11-22T00:00:00Z"}))
    assert db.present()
    assert not db.outdated(dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    assert db.outdated(dt.datetime(2026, 11, 23, tzinfo=dt.UTC))
    assert db.ensure()  # out of date but present: still usable
