"""The audit stage through the scanner's real bootstrap with a fake auditor that answers with a
real trivy 0.76 report (tests/fixtures/trivy/image_audit.json: an image with a masked GitHub token
in /app/settings.py, a root user, no health check and `ENV API_PASSWORD=hunter2hunter2`, whose
value trivy quotes in the DS-0031 code lines): the events, each mode's verdict, and the refusals."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from services.scanner.audit_stage import _capped
from services.scanner.bootstrap import bootstrap
from services.scanner.handlers import PackageScanSetup
from services.scanner.image_audit import ImageAudit, trivy_flags
from services.scanner.report import ScannerCrashed, ScanReport
from services.scanner.settings import ScannerSettings
from services.scanner.trivy_json import parse_trivy_results
from shared.bus import MemoryIdempotencyGuard
from shared.bus import topology as t
from shared.config import AuditConfig, RegistryConfig, ScanPolicy
from shared.events import ImagePushed, StageFinished, StageStarted
from shared.events.scan import AuditCompleted, Finding, ScanCompleted

FIXTURE = Path(__file__).parents[1] / "fixtures" / "trivy" / "image_audit.json"
FIXTURE_IMAGE = "127.0.0.1:5000/kiln-test/audit-exp:t"  # what the fixture's run was given
DIGEST = "sha256:" + "c" * 64
PUSHED = ImagePushed(
    target="webhook",
    platform="linux/amd64",
    repository="127.0.0.1:5000/kiln/axion-webhook-demo",
    tag="b7",
    digest=DIGEST,
    size_bytes=1,
)
ALL = ["deps", "config", "secrets", "image"]


@dataclass
class FakeContext:
    build_id: str = "build-1"
    package: str = "demo"
    emitted: list = field(default_factory=list)
    envelope: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(attempt=1, replayonly=None))

    def emit(self, event):
        self.emitted.append(event)

    def of(self, kind):
        return [e for e in self.emitted if isinstance(e, kind)]

    def audit_finished(self) -> StageFinished:
        (finished,) = [e for e in self.of(StageFinished) if e.stage == "audit"]
        return finished


@dataclass
class FakeTrivy:
    """Scan: clean. Audit: the fixture (vulnerabilities not looked for: no database here)."""

    error: Exception | None = None
    without: frozenset[str] = frozenset()  # result classes left out of the fixture
    audits: list = field(default_factory=list)

    def scan_image(self, reference, *, vulnerabilities=True):
        return ScanReport(scanner="trivy", vuln_db="skipped")

    def audit_image(self, reference, modes):
        self.audits.append((reference, list(modes)))
        if self.error:
            raise self.error
        # trivy names the image's results after the reference it was given
        text = FIXTURE.read_text().replace(FIXTURE_IMAGE, reference)
        results = tuple(r for r in parse_trivy_results(text) if r.kind not in self.without)
        return ImageAudit(results, vulnerabilities_checked=False, note="skipped: no vulnerability database")


def run(audit: AuditConfig, trivy=None, registry=None, cancelled=False) -> FakeContext:
    trivy = trivy or FakeTrivy()
    app = bootstrap(
        ScannerSettings(registry_url="127.0.0.1:5000"),
        scanner=trivy,
        package_setup=lambda package: PackageScanSetup(policy=ScanPolicy(), registry=registry, audit=audit),
        harbor_for=lambda registry: None,
        today=lambda: dt.date(2026, 12, 3),
        guard=MemoryIdempotencyGuard(),
    )
    if cancelled:
        app.cancel._cancelled["build-1"] = ("superseded", 1)
    ctx = FakeContext()
    app.handlers(t.SCANNER_IMAGES)[ImagePushed](PUSHED, ctx)
    return ctx


def verdicts(ctx: FakeContext) -> dict[str, str]:
    return {e.mode: e.verdict for e in ctx.of(AuditCompleted)}


def test_after_the_scan_one_audit_completed_per_mode_then_the_stage():
    trivy = FakeTrivy()
    ctx = run(AuditConfig(modes=ALL, fail_on=["secrets"]), trivy)
    assert trivy.audits == [(f"{PUSHED.repository}@{DIGEST}", ALL)]  # one run, the pushed digest
    kinds = [(type(e).__name__, getattr(e, "stage", getattr(e, "mode", ""))) for e in ctx.emitted]
    assert kinds == [
        ("StageStarted", "scan"),
        ("ScanCompleted", ""),
        ("StageFinished", "scan"),
        ("StageStarted", "audit"),
        *(("AuditCompleted", mode) for mode in ALL),
        ("StageFinished", "audit"),
    ]
    audits = {e.mode: e for e in ctx.of(AuditCompleted)}
    assert {(e.image, e.platform, e.digest) for e in audits.values()} == {("webhook", "linux/amd64", DIGEST)}
    assert audits["deps"].counts["packages"] == 2 and audits["image"].counts["packages"] == 5
    assert "no vulnerability database" in audits["deps"].note
    assert {f.id for f in audits["config"].findings} == {"DS-0002", "DS-0026", "DS-0031"}
    assert {(f.file, f.line) for f in audits["config"].findings if f.id == "DS-0031"} == {("image config", 4)}
    (secret,) = audits["secrets"].findings
    assert (secret.id, secret.file, secret.line) == ("github-pat", "/app/settings.py", 1)
    assert secret.layer.startswith("sha256:")
    assert verdicts(ctx) == {"deps": "report", "config": "report", "secrets": "fail", "image": "report"}
    finished = ctx.audit_finished()
    assert (finished.status, finished.target, finished.platform) == ("failed", "webhook", "linux/amd64")
    assert finished.error == "secrets: 1 finding(s) (github-pat at /app/settings.py:1)"
    assert finished.detail["blocking"] == ["github-pat"]
    assert finished.detail["modes"]["secrets"]["verdict"] == "fail"
    assert "secrets 1 found, worst CRITICAL fail" in finished.detail["summary"]


def test_no_matched_text_reaches_an_event():
    ctx = run(AuditConfig(modes=ALL, fail_on=["secrets", "config"]))
    dumped = json.dumps([e.model_dump(mode="json") for e in ctx.emitted])
    assert "hunter2" not in dumped  # trivy quotes the ENV line in DS-0031's code; we never copy it
    assert "****" not in dumped and "GITHUB_TOKEN" not in dumped  # nor the masked match


def test_not_in_fail_on_the_findings_are_reported_and_the_stage_succeeds():
    ctx = run(AuditConfig(modes=ALL))
    assert set(verdicts(ctx).values()) == {"report"}
    assert ctx.audit_finished().status == "succeeded"
    assert ctx.of(AuditCompleted)[2].findings[0].id == "github-pat"


def test_fail_at_sets_the_lowest_severity_that_fails_a_mode():
    lenient = run(AuditConfig(modes=["config"], fail_on=["config"], fail_at={"config": "CRITICAL"}))
    assert verdicts(lenient) == {"config": "fail"}  # DS-0031 (secrets in ENV) is CRITICAL
    assert lenient.audit_finished().error.startswith("config: 1 finding(s) at or above CRITICAL (DS-0031")
    strict = run(AuditConfig(modes=["config"], fail_on=["config"]))
    assert len(strict.audit_finished().detail["blocking"]) == 3  # any severity: all three


def test_a_gating_mode_with_nothing_found_passes():
    ctx = run(AuditConfig(modes=["secrets"], fail_on=["secrets"]), FakeTrivy(without=frozenset({"secret"})))
    assert verdicts(ctx) == {"secrets": "pass"}
    assert ctx.audit_finished().status == "succeeded"


def test_a_gating_mode_that_could_not_look_fails():
    """deps in fail_on without a vulnerability database: nobody looked, so it is no pass."""
    ctx = run(AuditConfig(modes=["deps", "secrets"], fail_on=["deps"]))
    assert verdicts(ctx) == {"deps": "fail", "secrets": "report"}
    assert ctx.audit_finished().error.startswith("deps: not audited (skipped: no vulnerability database")


def test_trivy_failing_fails_gating_modes_and_only_reports_the_others():
    crash = FakeTrivy(error=ScannerCrashed("trivy image failed 3 time(s), last: exit status 1"))
    gating = run(AuditConfig(modes=["secrets", "config"], fail_on=["secrets"]), crash)
    assert verdicts(gating) == {"secrets": "fail", "config": "report"}
    assert gating.audit_finished().status == "failed"
    assert "audit failed: trivy image failed" in gating.of(AuditCompleted)[0].note
    reporting = run(AuditConfig(modes=["secrets"]), FakeTrivy(error=ScannerCrashed("boom")))
    assert reporting.audit_finished().status == "succeeded"


def test_an_image_outside_the_operators_registry_is_never_pulled_for_an_audit():
    """A forged image.pushed naming another registry: the audit pulls nothing and says why."""
    trivy = FakeTrivy()
    foreign = RegistryConfig(host="evil.example.com:5000")
    ctx = run(AuditConfig(modes=["secrets"], fail_on=["secrets"]), trivy, registry=foreign)
    assert trivy.audits == []
    (audit,) = ctx.of(AuditCompleted)
    assert audit.verdict == "fail" and audit.note.startswith("not audited: packages.demo.deployment.registry")
    assert ctx.audit_finished().status == "failed"


def test_without_audit_modes_or_when_cancelled_there_is_no_audit_stage():
    assert not [e for e in run(AuditConfig()).of(StageStarted) if e.stage == "audit"]
    cancelled = run(AuditConfig(modes=ALL), cancelled=True)
    assert [e.stage for e in cancelled.of(StageFinished)] == ["scan"]
    assert not cancelled.of(ScanCompleted)


@pytest.mark.parametrize(
    ("modes", "with_vulns", "flags"),
    [
        (
            ALL,
            True,
            ["--scanners", "vuln,secret", "--image-config-scanners", "secret,misconfig", "--list-all-pkgs"],
        ),
        (
            ALL,
            False,
            ["--scanners", "secret", "--image-config-scanners", "secret,misconfig", "--list-all-pkgs"],
        ),
        (["deps"], False, ["--scanners", "", "--list-all-pkgs"]),
        (["config"], True, ["--scanners", "", "--image-config-scanners", "misconfig"]),
    ],
)
def test_one_trivy_run_asks_only_for_what_the_modes_need(modes, with_vulns, flags):
    assert trivy_flags(modes, with_vulns=with_vulns) == flags


def test_a_long_list_of_findings_is_capped_in_the_event_but_counted_in_full():
    many = tuple(Finding(id=f"CVE-2026-{n:05d}", severity="LOW") for n in range(450))
    event = _capped(AuditCompleted(mode="deps", counts={"LOW": 450}, findings=many, note="x"))
    assert len(event.findings) == 200 and event.counts == {"LOW": 450}
    assert event.note == "x; 250 more findings not listed in this event"


def test_with_a_database_deps_and_image_split_the_vulnerabilities_and_gate_at_their_severity():
    """The vulnerability path in Trivy's real output shape (no database can be downloaded here)."""
    vulns = Path(__file__).parents[1] / "fixtures" / "trivy" / "image_vulnerabilities.json"

    class WithDatabase(FakeTrivy):
        def audit_image(self, reference, modes):
            return ImageAudit(parse_trivy_results(vulns.read_text()), vulnerabilities_checked=True)

    config = AuditConfig(
        modes=["deps", "image"], fail_on=["deps", "image"], fail_at={"deps": "HIGH", "image": "HIGH"}
    )
    ctx = run(config, WithDatabase())
    audits = {e.mode: e for e in ctx.of(AuditCompleted)}
    assert [f.id for f in audits["deps"].findings] == ["GHSA-9wx4-h78v-vm56"]  # the Python package's
    assert audits["image"].counts["CRITICAL"] == 2 and audits["image"].note == ""
    assert verdicts(ctx) == {"deps": "pass", "image": "fail"}  # deps' MEDIUM is under HIGH
    assert ctx.audit_finished().error.startswith("image: 5 finding(s) at or above HIGH (CVE-2023-0286")
