"""Trivy's JSON report read into findings: the real output shape, and every malformed variant
becoming an error instead of an empty (passing) report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.scanner.report import MalformedReport
from services.scanner.trivy_json import parse_trivy_report

FIXTURES = Path(__file__).parents[1] / "fixtures" / "trivy"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_vulnerabilities_become_findings_with_package_versions_and_severity():
    report = parse_trivy_report(fixture("image_vulnerabilities.json"))
    assert report.scanner == "trivy"
    assert len(report.vulnerabilities) == 8
    first = report.vulnerabilities[0]
    assert (first.id, first.package, first.installed, first.fixed, first.severity) == (
        "CVE-2023-0286",
        "libssl3",
        "3.0.11-1~deb12u2",
        "3.0.13-1~deb12u1",
        "CRITICAL",
    )
    assert report.counts() == {"CRITICAL": 2, "HIGH": 3, "MEDIUM": 2, "LOW": 1, "UNKNOWN": 0}
    unfixed = [f.id for f in report.vulnerabilities if not f.fixed]
    assert unfixed == ["CVE-2024-45492", "CVE-2023-52425", "CVE-2023-50495", "CVE-2011-3374"]


def test_image_secret_names_file_and_layer_digest_without_the_match():
    report = parse_trivy_report(fixture("image_secret.json"))
    (secret,) = report.secrets
    assert secret.id == "private-key"
    assert secret.file == "/app/deploy_key.pem"
    assert secret.layer == "sha256:f5968aebcb673ad81038d0453fed32bf03887c118bcbb209764e56c647dfea48"
    assert "*" not in secret.model_dump_json()


def test_secret_layer_falls_back_to_diff_id():
    document = json.loads(fixture("image_secret.json"))
    del document["Results"][1]["Secrets"][0]["Layer"]["Digest"]
    (secret,) = parse_trivy_report(json.dumps(document)).secrets
    assert secret.layer.startswith("sha256:fdd6680a")


def test_misconfigurations_keep_failures_only():
    document = json.loads(fixture("config_dockerfile.json"))
    passing = dict(document["Results"][0]["Misconfigurations"][0], Status="PASS", ID="DS-9999")
    document["Results"][0]["Misconfigurations"].append(passing)
    report = parse_trivy_report(json.dumps(document))
    assert {m.id for m in report.misconfigurations} == {"DS-0002", "DS-0026"}
    assert all(m.file == "Dockerfile" for m in report.misconfigurations)


def test_clean_report_and_missing_results_are_empty():
    assert parse_trivy_report(fixture("image_clean.json")).vulnerabilities == ()
    document = json.loads(fixture("image_clean.json"))
    del document["Results"]
    assert parse_trivy_report(json.dumps(document)).counts()["CRITICAL"] == 0


def test_vuln_db_state_is_carried():
    assert parse_trivy_report(fixture("image_clean.json"), vuln_db="skipped").vuln_db == "skipped"


def test_harbor_style_severity_words_are_normalised():
    document = json.loads(fixture("image_vulnerabilities.json"))
    document["Results"][0]["Vulnerabilities"][0]["Severity"] = "Negligible"
    document["Results"][0]["Vulnerabilities"][1]["Severity"] = "whatever"
    report = parse_trivy_report(json.dumps(document))
    assert [f.severity for f in report.vulnerabilities[:2]] == ["LOW", "UNKNOWN"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "not JSON"),
        ("{truncated", "not JSON"),
        ("[]", "not a Trivy report"),
        ('{"Results": []}', "not a Trivy report"),
        ('{"SchemaVersion": 1, "Results": []}', "SchemaVersion 1"),
        ('{"SchemaVersion": 2, "Results": {}}', "Results is not a list"),
        ('{"SchemaVersion": 2, "Results": ["x"]}', "is not an object"),
        ('{"SchemaVersion": 2, "Results": [{"Vulnerabilities": {}}]}', "Vulnerabilities is not a list"),
        ('{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"PkgName": "a"}]}]}', "VulnerabilityID"),
        ('{"SchemaVersion": 2, "Results": [{"Secrets": [{"Title": "x"}]}]}', "RuleID"),
    ],
)
def test_malformed_output_is_an_error_never_an_empty_report(raw, message):
    with pytest.raises(MalformedReport, match=message):
        parse_trivy_report(raw)
