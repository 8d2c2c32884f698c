"""on_image_pushed through the real bootstrap with fakes: the events a scan produces, and every
way a scan can go wrong ending as a failing verdict with a reason, never a pass."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from services.scanner.bootstrap import bootstrap
from services.scanner.handlers import PackageScanSetup
from services.scanner.report import (
    NO_VULN_DB_NOTE,
    MalformedReport,
    ScannerCrashed,
    ScannerMissing,
    ScanReport,
)
from services.scanner.settings import ScannerSettings
from services.scanner.trivy_json import parse_trivy_report
from shared.bus import MemoryIdempotencyGuard
from shared.bus import topology as t
from shared.config import RegistryConfig, ScanPolicy
from shared.events import ImagePushed, StageFinished, StageStarted
from shared.events.scan import Finding, ScanCompleted

FIXTURES = Path(__file__).parents[1] / "fixtures" / "trivy"
DIGEST = "sha256:" + "b" * 64
PUSHED = ImagePushed(
    target="webhook",
    platform="linux/amd64",
    repository="127.0.0.1:5000/kiln/axion-webhook-demo",
    tag="b7",
    digest=DIGEST,
    size_bytes=1234,
)


@dataclass
class FakeContext:
    build_id: str = "build-1"
    package: str = "demo"
    emitted: list = field(default_factory=list)
    envelope: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(attempt=1))

    def emit(self, event):
        self.emitted.append(event)

    def of(self, kind):
        return [e for e in self.emitted if isinstance(e, kind)]


@dataclass
class FakeScanner:
    report: ScanReport | None = None
    error: Exception | None = None
    calls: list = field(default_factory=list)

    def scan_image(self, reference, *, vulnerabilities=True):
        self.calls.append((reference, vulnerabilities))
        if self.error:
            raise self.error
        return self.report


@dataclass
class FakeHarbor:
    report: ScanReport
    calls: list = field(default_factory=list)

    def vulnerability_report(self, project, repository, digest):
        self.calls.append((project, repository, digest))
        return self.report


def fixture_report(name: str, **kw) -> ScanReport:
    return parse_trivy_report((FIXTURES / name).read_text(), **kw)


DEFAULT_POLICY = ScanPolicy()


def run(scanner, policy=DEFAULT_POLICY, registry=None, harbor=None, cancelled=False) -> FakeContext:
    app = bootstrap(
        ScannerSettings(),
        scanner=scanner,
        package_setup=lambda package: PackageScanSetup(policy=policy, registry=registry),
        harbor_for=lambda registry: harbor,
        today=lambda: dt.date(2026, 11, 21),
        guard=MemoryIdempotencyGuard(),
    )
    if cancelled:
        app.cancel._cancelled["build-1"] = ("superseded", 1)
    ctx = FakeContext()
    app.handlers(t.SCANNER_IMAGES)[ImagePushed](PUSHED, ctx)
    return ctx


def test_clean_image_passes_and_reports_stage_and_scan():
    scanner = FakeScanner(fixture_report("image_clean.json"))
    ctx = run(scanner)
    assert scanner.calls == [(f"127.0.0.1:5000/kiln/axion-webhook-demo@{DIGEST}", True)]
    assert [type(e) for e in ctx.emitted] == [StageStarted, ScanCompleted, StageFinished]
    (scan,) = ctx.of(ScanCompleted)
    assert (scan.verdict, scan.scanner, scan.digest, scan.platform) == (
        "pass",
        "trivy",
        DIGEST,
        "linux/amd64",
    )
    assert scan.counts == {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}
    (finished,) = ctx.of(StageFinished)
    assert (finished.stage, finished.status, finished.error) == ("scan", "succeeded", None)


def test_vulnerabilities_over_policy_fail_naming_the_blocking_findings():
    ctx = run(FakeScanner(fixture_report("image_vulnerabilities.json")), ScanPolicy(max={"CRITICAL": 0}))
    (scan,) = ctx.of(ScanCompleted)
    assert scan.verdict == "fail"
    assert {f.id for f in scan.blocking} == {"CVE-2023-0286", "CVE-2024-45492"}
    assert len(scan.findings) == 8
    (finished,) = ctx.of(StageFinished)
    assert finished.status == "failed"
    assert finished.error == "CRITICAL: 2 > max 0 (CVE-2023-0286, CVE-2024-45492)"
    assert finished.detail["blocking"] == ["CVE-2023-0286", "CVE-2024-45492"]


def test_planted_secret_fails_naming_file_and_layer():
    ctx = run(FakeScanner(fixture_report("image_secret.json")), ScanPolicy(max={}))
    (scan,) = ctx.of(ScanCompleted)
    assert scan.verdict == "fail"
    assert scan.secrets[0].file == "/app/deploy_key.pem"
    assert "/app/deploy_key.pem" in ctx.of(StageFinished)[0].error


def test_no_vulnerability_database_is_never_silent():
    ctx = run(FakeScanner(fixture_report("image_clean.json", vuln_db="skipped")))
    (scan,) = ctx.of(ScanCompleted)
    assert (scan.verdict, scan.vuln_db) == ("pass", "skipped")
    assert scan.note.startswith(NO_VULN_DB_NOTE)
    strict = run(
        FakeScanner(fixture_report("image_clean.json", vuln_db="skipped")), ScanPolicy(require_vuln_db=True)
    )
    assert strict.of(ScanCompleted)[0].verdict == "fail"


def test_scanner_failures_fail_the_stage_with_the_reason():
    for error in (
        ScannerMissing("trivy not found at '/nope': set KILN_TRIVY"),
        ScannerCrashed("trivy image failed 3 time(s), last: exit status 1: FATAL boom"),
        MalformedReport("trivy output is not JSON"),
    ):
        ctx = run(FakeScanner(error=error))
        (scan,) = ctx.of(ScanCompleted)
        assert scan.verdict == "fail"
        assert str(error) in scan.note
        (finished,) = ctx.of(StageFinished)
        assert finished.status == "failed"
        assert str(error) in finished.error


def test_unknown_package_in_config_fails_the_stage():
    def unknown(package):
        raise KeyError(f"no package {package!r} in config")

    app = bootstrap(
        ScannerSettings(), scanner=FakeScanner(), package_setup=unknown, guard=MemoryIdempotencyGuard()
    )
    ctx = FakeContext()
    app.handlers(t.SCANNER_IMAGES)[ImagePushed](PUSHED, ctx)
    assert ctx.of(ScanCompleted)[0].verdict == "fail"
    assert "no package 'demo'" in ctx.of(StageFinished)[0].error


def test_harbor_registry_reads_vulnerabilities_from_harbor_and_secrets_from_trivy():
    harbor_report = ScanReport(
        scanner="harbor",
        vulnerabilities=(Finding(id="CVE-2024-0001", severity="HIGH", package="libc6", fixed="2.36-10"),),
    )
    harbor = FakeHarbor(harbor_report)
    trivy = FakeScanner(fixture_report("image_clean.json"))
    registry = RegistryConfig(type="harbor", host="127.0.0.1:5000", project="kiln")
    ctx = run(trivy, ScanPolicy(max={"HIGH": 0}), registry=registry, harbor=harbor)
    assert harbor.calls == [("kiln", "axion-webhook-demo", DIGEST)]
    assert trivy.calls == [(f"127.0.0.1:5000/kiln/axion-webhook-demo@{DIGEST}", False)]
    (scan,) = ctx.of(ScanCompleted)
    assert (scan.scanner, scan.verdict, scan.counts["HIGH"]) == ("harbor", "fail", 1)


def test_cancelled_build_stops_before_scanning():
    scanner = FakeScanner(fixture_report("image_clean.json"))
    ctx = run(scanner, cancelled=True)
    assert scanner.calls == []
    assert ctx.of(StageFinished)[0].status == "cancelled"


def test_events_carry_no_secret_material():
    ctx = run(FakeScanner(fixture_report("image_secret.json")))
    dumped = json.dumps([e.model_dump(mode="json") for e in ctx.emitted])
    assert "BEGIN" not in dumped
    assert "****" not in dumped


def test_a_repository_outside_the_operators_registry_is_never_pulled():
    scanner = FakeScanner(fixture_report("image_clean.json"))
    app = bootstrap(
        ScannerSettings(),  # credentials for 127.0.0.1:5000 (KILN_REGISTRY_URL's default)
        scanner=scanner,
        package_setup=lambda package: PackageScanSetup(policy=DEFAULT_POLICY),
        guard=MemoryIdempotencyGuard(),
    )
    ctx = FakeContext()
    forged = PUSHED.model_copy(update={"repository": "127.0.0.1:5999/kiln/axion-webhook-demo"})
    app.handlers(t.SCANNER_IMAGES)[ImagePushed](forged, ctx)
    assert scanner.calls == [], "nothing may be pulled (with the credentials) from another host"
    (scan,) = ctx.of(ScanCompleted)
    assert scan.verdict == "fail" and "not under the operator's registry 127.0.0.1:5000" in scan.note
    assert ctx.of(StageFinished)[0].status == "failed"


def test_a_package_registry_the_credentials_are_not_for_fails_the_scan():
    scanner = FakeScanner(fixture_report("image_clean.json"))
    elsewhere = RegistryConfig(type="registry", host="registry.example.com", project="kiln")
    ctx = run(scanner, registry=elsewhere)
    assert scanner.calls == []
    assert "KILN_REGISTRY_URL" in ctx.of(ScanCompleted)[0].note
