"""The offline advisory database: safety-db's real file, ranges, names, bad files."""

from __future__ import annotations

import json

import pytest

from services.scanner.adapters.advisories import (
    AdvisoryDatabase,
    AdvisoryDbUnreadable,
    WithAdvisories,
    resolve,
)
from services.scanner.report import ScanReport


def test_the_bundled_safety_db_is_real_and_dated():
    database = resolve("safety-db")
    assert len(database.advisories) > 1000
    assert database.describe() == "safety-db 2021.7.17 (advisories as of 2021-07-01)"
    found = database.findings([("pyyaml", "5.3"), ("PyYAML", "5.3.1"), ("unknown-pkg", "1.0")], "HIGH")
    assert [(f.id, f.installed) for f in found if f.id == "CVE-2020-1747"] == [("CVE-2020-1747", "5.3")]
    assert resolve("") is None


def test_names_are_canonical_and_bad_versions_or_ranges_are_skipped(tmp_path):
    path = tmp_path / "db.json"
    path.write_text(
        json.dumps(
            {
                "$meta": {"timestamp": 0},
                "Some_Pkg": [
                    {"cve": "CVE-1", "specs": ["<2.0", ">=1.0"], "advisory": "x"},
                    {"id": "pyup-2", "specs": ["not a range"]},
                ],
            }
        )
    )
    database = AdvisoryDatabase.load(path)
    assert [f.id for f in database.findings([("some-pkg", "1.5")], "LOW")] == ["CVE-1"]
    assert database.findings([("some.pkg", "2.0"), ("some-pkg", "not-a-version")], "LOW") == ()
    assert database.findings([("some-pkg", "1.5")], "LOW")[0].fixed == ""  # two-sided range


@pytest.mark.parametrize("content", ["not json", "[]", '{"$meta": {}}'])
def test_an_unreadable_database_is_an_error_naming_the_file(tmp_path, content):
    path = tmp_path / "db.json"
    path.write_text(content)
    with pytest.raises(AdvisoryDbUnreadable, match=r"db\.json"):
        AdvisoryDatabase.load(path)
    with pytest.raises(AdvisoryDbUnreadable):
        resolve(str(tmp_path / "missing.json"))


class Trivy:
    def __init__(self, vuln_db):
        self.vuln_db = vuln_db

    def scan_image(self, reference, *, vulnerabilities=True):
        return ScanReport(scanner="trivy", vuln_db=self.vuln_db)

    def python_packages(self, reference):
        return [("pyyaml", "5.3")]


def test_trivy_with_its_database_stands_and_a_secrets_only_scan_is_untouched():
    database = resolve("safety-db")
    assert WithAdvisories(Trivy("ok"), database).scan_image("r").vulnerabilities == ()
    assert (
        WithAdvisories(Trivy("skipped"), database).scan_image("r", vulnerabilities=False).vuln_db == "skipped"
    )
    filled = WithAdvisories(Trivy("skipped"), database, severity="CRITICAL").scan_image("r")
    assert filled.vuln_db == "ok" and {f.severity for f in filled.vulnerabilities} == {"CRITICAL"}
