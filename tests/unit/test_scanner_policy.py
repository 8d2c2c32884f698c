"""The policy gate, driven by Trivy fixtures: max per severity, ignore_unfixed, the allow-list and
its expiry (a fixed 'today'), the secret gate and the missing vulnerability database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.scanner.policy import NO_VULN_DB_FINDING, evaluate
from services.scanner.report import NO_VULN_DB_NOTE, ScanReport
from services.scanner.trivy_json import parse_trivy_report
from shared.config.sections import ScanPolicy
from shared.events.scan import Finding

FIXTURES = Path(__file__).parents[1] / "fixtures" / "trivy"
TODAY = dt.date(2026, 11, 21)
# image_vulnerabilities.json: CRITICAL 2, HIGH 3, MEDIUM 2 (one unfixed each), LOW 1 (unfixed)
VULNS = parse_trivy_report((FIXTURES / "image_vulnerabilities.json").read_text())
CLEAN = parse_trivy_report((FIXTURES / "image_clean.json").read_text())
SECRET = parse_trivy_report((FIXTURES / "image_secret.json").read_text())


def policy(**values) -> ScanPolicy:
    return ScanPolicy.model_validate(values)


def allow(finding_id: str, expires: dt.date) -> dict:
    return {"id": finding_id, "reason": "accepted risk, tracked in OPS-1", "expires": expires.isoformat()}


def ids(findings) -> set[str]:
    return {f.id for f in findings}


def test_clean_image_passes_the_default_policy():
    verdict = evaluate(CLEAN, ScanPolicy(), TODAY)
    assert verdict.verdict == "pass"
    assert verdict.blocking == ()
    assert verdict.summary() == "within policy"


def test_default_policy_fails_on_any_critical_and_names_them():
    verdict = evaluate(VULNS, ScanPolicy(), TODAY)
    assert verdict.verdict == "fail"
    assert ids(verdict.blocking) == {"CVE-2023-0286", "CVE-2024-45492"}
    assert verdict.reasons == ("CRITICAL: 2 > max 0",)


@pytest.mark.parametrize(
    ("limits", "expected", "blocking"),
    [
        ({"CRITICAL": 2, "HIGH": 3}, "pass", set()),
        ({"CRITICAL": 2, "HIGH": 2}, "fail", {"CVE-2023-4911", "CVE-2023-5363", "CVE-2023-52425"}),
        ({"CRITICAL": 5, "HIGH": 5, "MEDIUM": 1}, "fail", {"CVE-2023-50495", "GHSA-9wx4-h78v-vm56"}),
        ({"CRITICAL": 2, "LOW": 0}, "fail", {"CVE-2011-3374"}),
        ({}, "pass", set()),
    ],
)
def test_max_per_severity_exactly_at_the_limit_passes(limits, expected, blocking):
    verdict = evaluate(VULNS, policy(max=limits), TODAY)
    assert verdict.verdict == expected
    assert ids(verdict.blocking) == blocking


def test_ignore_unfixed_drops_findings_without_a_fixed_version():
    limits = {"CRITICAL": 0, "HIGH": 2}
    assert evaluate(VULNS, policy(max=limits), TODAY).verdict == "fail"
    verdict = evaluate(VULNS, policy(max=limits, ignore_unfixed=True), TODAY)
    assert ids(verdict.blocking) == {"CVE-2023-0286"}  # the fixed critical still fails it
    assert verdict.reasons == ("CRITICAL: 1 > max 0",)


def test_allow_list_entry_in_force_removes_the_finding():
    rules = policy(max={"CRITICAL": 0}, ignore_unfixed=True, allow=[allow("CVE-2023-0286", TODAY)])
    assert evaluate(VULNS, rules, TODAY).verdict == "pass"  # expires today: still in force


def test_an_allowed_finding_present_in_the_image_is_named_with_its_reason_and_expiry():
    entries = [allow("CVE-2023-0286", TODAY), allow("CVE-1999-0001", TODAY)]  # the second: not there
    verdict = evaluate(VULNS, policy(max={"CRITICAL": 1}, allow=entries), TODAY)
    said = [n for n in verdict.notes if "allowed until" in n]
    assert said == ["CVE-2023-0286 allowed until 2026-11-21: accepted risk, tracked in OPS-1"]
    expired = evaluate(VULNS, policy(allow=entries), TODAY + dt.timedelta(days=1))
    assert not [n for n in expired.notes if "allowed until" in n]


def test_allow_list_entry_counts_again_the_day_after_it_expires():
    rules = policy(max={"CRITICAL": 0}, ignore_unfixed=True, allow=[allow("CVE-2023-0286", TODAY)])
    verdict = evaluate(VULNS, rules, TODAY + dt.timedelta(days=1))
    assert verdict.verdict == "fail"
    assert ids(verdict.blocking) == {"CVE-2023-0286"}
    assert any("CVE-2023-0286 expired on 2026-11-21" in note for note in verdict.notes)


def test_allow_list_accepts_ghsa_ids_and_leaves_other_ids_alone():
    rules = policy(
        max={"MEDIUM": 1},
        allow=[allow("GHSA-9wx4-h78v-vm56", TODAY + dt.timedelta(days=30)), allow("CVE-1999-0001", TODAY)],
    )
    assert evaluate(VULNS, rules, TODAY).verdict == "pass"


def test_a_secret_fails_every_policy_naming_file_and_layer():
    lenient = policy(max={}, ignore_unfixed=True)
    verdict = evaluate(SECRET, lenient, TODAY)
    assert verdict.verdict == "fail"
    (secret,) = verdict.blocking
    assert secret.file == "/app/deploy_key.pem"
    assert "/app/deploy_key.pem" in verdict.summary()
    assert "sha256:f5968aebcb67" in verdict.summary()


def test_missing_vulnerability_database_is_reported_and_blocks_only_when_required():
    skipped = ScanReport(scanner="trivy", vuln_db="skipped")
    verdict = evaluate(skipped, ScanPolicy(), TODAY)
    assert verdict.verdict == "pass"
    assert verdict.notes[0] == NO_VULN_DB_NOTE
    strict = evaluate(skipped, policy(require_vuln_db=True), TODAY)
    assert strict.verdict == "fail"
    assert strict.blocking == (NO_VULN_DB_FINDING,)
    assert NO_VULN_DB_NOTE in strict.summary()


def test_findings_failing_several_rules_are_all_listed():
    report = ScanReport(
        scanner="trivy",
        vulnerabilities=VULNS.vulnerabilities,
        secrets=(Finding(id="github-pat", severity="CRITICAL", file="/app/.env"),),
    )
    verdict = evaluate(report, policy(max={"CRITICAL": 0, "HIGH": 0}), TODAY)
    assert len(verdict.reasons) == 3
    assert len(verdict.blocking) == 1 + 2 + 3
