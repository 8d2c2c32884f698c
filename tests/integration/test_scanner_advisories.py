"""A CVE gate that has seen a real CVE: Trivy has no vulnerability database here, so the image's
Python packages (read by real Trivy from the pushed image) are matched against safety-db's real
advisory file. PyYAML 5.3 (CVE-2020-1747) fails the gate naming the CVE; an allow-list entry lets
it through until its expiry; 5.3.1 passes; the report says which advisories, and how old."""

from __future__ import annotations

import datetime as dt

import pytest

from services.scanner.adapters.advisories import WithAdvisories, resolve
from services.scanner.policy import evaluate
from shared.config import ScanPolicy
from tests.integration.test_scanner_trivy import push_image, trivy  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


def installed(name: str, version: str) -> dict[str, bytes]:
    """A package as pip leaves it in site-packages: its dist-info metadata (what scanners read)."""
    where = f"/opt/venv/lib/python3.11/site-packages/{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    return {f"{where}/METADATA": metadata, f"{where}/RECORD": b"", f"{where}/INSTALLER": b"pip\n"}


@pytest.fixture(scope="module")
def scanner(trivy):  # noqa: F811
    return WithAdvisories(trivy, resolve("safety-db"), severity="HIGH")


def test_a_vulnerable_pyyaml_fails_the_gate_naming_the_cve(scanner):
    repository, digest = push_image("pyyaml53", installed("PyYAML", "5.3"))
    report = scanner.scan_image(f"{repository}@{digest}")
    ids = {f.id for f in report.vulnerabilities}
    assert "CVE-2020-1747" in ids, ids
    finding = next(f for f in report.vulnerabilities if f.id == "CVE-2020-1747")
    assert (finding.package, finding.installed, finding.fixed, finding.severity) == (
        "PyYAML",
        "5.3",
        "5.3.1",
        "HIGH",
    )
    assert report.vuln_db == "ok"
    assert "safety-db 2021.7.17 (advisories as of 2021-07-01)" in report.notes[0]
    verdict = evaluate(report, ScanPolicy(max={"HIGH": 0}), dt.date(2026, 12, 3))
    assert verdict.verdict == "fail" and "CVE-2020-1747" in {f.id for f in verdict.blocking}

    allow = [{"id": "CVE-2020-1747", "reason": "only safe_load is used", "expires": "2026-12-31"}]
    allowed = ScanPolicy(max={"HIGH": 0}, allow=allow)
    others = ids - {"CVE-2020-1747"}
    if not others:
        assert evaluate(report, allowed, dt.date(2026, 12, 3)).verdict == "pass"
    assert "CVE-2020-1747" not in {f.id for f in evaluate(report, allowed, dt.date(2026, 12, 3)).blocking}
    expired = evaluate(report, allowed, dt.date(2027, 1, 1))
    assert expired.verdict == "fail" and any("expired on 2026-12-31" in n for n in expired.notes)


def test_the_fixed_version_passes(scanner):
    repository, digest = push_image("pyyaml531", installed("PyYAML", "5.3.1"))
    report = scanner.scan_image(f"{repository}@{digest}")
    assert "CVE-2020-1747" not in {f.id for f in report.vulnerabilities}
    assert "Python packages checked offline" in report.notes[0]
