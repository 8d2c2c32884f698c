"""On `image.pushed`: scan the pushed digest, apply the package's gates, report the verdict.

Every outcome is reported as events and the handler returns normally: a verdict (pass or
fail) is a ScanCompleted plus StageFinished(scan); a scan that could not be done (trivy
missing or crashing after its bounded retries, Harbor unreachable or too slow, unreadable
output, bad config) is a ScanCompleted with verdict "fail" and the reason, never a pass, so the
deployer's gate stops the deploy either way. Redelivery re-emits the same event ids (derived
from the cause), so a retried scan never counts twice downstream.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from services.scanner.adapters.harbor import harbor_repository
from services.scanner.audit_stage import run_audit_stage
from services.scanner.policy import evaluate
from services.scanner.ports import ImageAuditor, ImageScanner, VulnerabilityRegistry
from services.scanner.report import ScanError, ScanReport
from shared.bus import EventContext
from shared.bus.stage import StageRun, stage
from shared.config import AuditConfig, ConfigError, RegistryConfig, ScanPolicy
from shared.events import ImagePushed
from shared.events.scan import Finding, ScanCompleted
from shared.naming import digest_ref, split_repository

log = logging.getLogger("kiln.scanner")

STAGE = "scan"
# Events stay small: beyond this many findings, the event says how many were left out.
MAX_FINDINGS_IN_EVENT = 200


@dataclass(frozen=True)
class PackageScanSetup:
    policy: ScanPolicy
    registry: RegistryConfig | None = None
    audit: AuditConfig = field(default_factory=AuditConfig)


PackageSetupFn = Callable[[str], PackageScanSetup]
HarborFor = Callable[[RegistryConfig], VulnerabilityRegistry]


def on_image_pushed(
    event: ImagePushed,
    ctx: EventContext,
    *,
    scanner: ImageScanner,
    package_setup: PackageSetupFn,
    harbor_for: HarborFor,
    registry_host: str,
    today: Callable[[], dt.date] = dt.date.today,
    is_cancelled: Callable[[str, int], bool] = lambda build_id, attempt: False,
) -> None:
    with stage(ctx, STAGE, target=event.target, platform=event.platform) as run:
        if is_cancelled(ctx.build_id, ctx.envelope.attempt):
            run.cancelled()
            return
        setup = _scan_stage(event, ctx, run, scanner, package_setup, harbor_for, registry_host, today)
    # The audit stage (services/scanner/audit_stage.py) when the package's operator config asks
    # for it; a config that could not be read failed the scan, which stops the deploy already.
    if setup is not None and setup.audit.modes and not is_cancelled(ctx.build_id):
        auditor: ImageAuditor = scanner  # type: ignore[assignment]  # the TrivyCli scans and audits
        refused = _pull_refusal(event.repository, ctx.package, setup.registry, registry_host)
        run_audit_stage(event, ctx, auditor=auditor, config=setup.audit, refused=refused)


def _scan_stage(
    event: ImagePushed,
    ctx: EventContext,
    run: StageRun,
    scanner: ImageScanner,
    package_setup: PackageSetupFn,
    harbor_for: HarborFor,
    registry_host: str,
    today: Callable[[], dt.date],
) -> PackageScanSetup | None:
    """The scan's verdict (or the reason it could not be done) as ScanCompleted, then the stage's.
    Returns the package's setup, or None when it could not be read."""
    use_harbor = False
    setup = None
    try:
        setup = package_setup(ctx.package)
        use_harbor = setup.registry is not None and setup.registry.type == "harbor"
        check_pull_source(event.repository, ctx.package, setup.registry, registry_host)
        report = _scan(event, setup, scanner, harbor_for if use_harbor else None)
    except (ScanError, ConfigError, KeyError, ValueError) as exc:
        reason = f"scan failed: {exc}"
        log.error("%s %s: %s", event.target, event.platform, reason)
        ctx.emit(
            ScanCompleted(
                target=event.target,
                platform=event.platform,
                digest=event.digest,
                scanner="harbor" if use_harbor else "trivy",
                verdict="fail",
                vuln_db="skipped",
                note=reason,
            )
        )
        run.fail(reason)
        return setup

    verdict = evaluate(report, setup.policy, today())
    counts = report.counts()
    note = "; ".join((*verdict.notes, *verdict.reasons, *_truncation(report.vulnerabilities)))
    ctx.emit(
        ScanCompleted(
            target=event.target,
            platform=event.platform,
            digest=event.digest,
            scanner=report.scanner,
            counts=counts,
            verdict=verdict.verdict,
            blocking=verdict.blocking[:MAX_FINDINGS_IN_EVENT],
            findings=report.vulnerabilities[:MAX_FINDINGS_IN_EVENT],
            secrets=report.secrets[:MAX_FINDINGS_IN_EVENT],
            vuln_db=report.vuln_db,
            note=note,
        )
    )
    run.detail.update(
        scanner=report.scanner,
        counts=counts,
        secrets=len(report.secrets),
        verdict=verdict.verdict,
        vuln_db=report.vuln_db,
        blocking=[f.id for f in verdict.blocking[:20]],
    )
    if not verdict.passed:
        # the ids too, so the run's error (and the report) says which advisories block it
        ids = ", ".join(dict.fromkeys(f.id for f in verdict.blocking[:5]))
        run.fail(f"{verdict.summary()} ({ids})" if ids else verdict.summary())
    return setup


def check_pull_source(
    repository: str, package: str, registry: RegistryConfig | None, registry_host: str
) -> None:
    """The scanner pulls with the registry credentials: only from the operator's registry, and only
    if that is the host the credentials are for (KILN_REGISTRY_URL). ValueError: the scan fails."""
    host, _ = split_repository(repository)
    if registry is not None and registry.host.lower() != registry_host.lower():
        raise ValueError(
            f"packages.{package}.deployment.registry.host is {registry.host!r} but the scanner's "
            f"credentials are for {registry_host!r} (KILN_REGISTRY_URL); make the two agree"
        )
    if host != registry_host.lower():
        raise ValueError(
            f"repository {repository[:200]!r} is not under the operator's registry {registry_host} "
            "(the only one the scanner pulls from, with its credentials)"
        )


def _pull_refusal(
    repository: str, package: str, registry: RegistryConfig | None, registry_host: str
) -> str | None:
    try:
        check_pull_source(repository, package, registry, registry_host)
    except ValueError as exc:
        return f"not audited: {exc}"
    return None


def _scan(
    event: ImagePushed,
    setup: PackageScanSetup,
    scanner: ImageScanner,
    harbor_for: HarborFor | None,
) -> ScanReport:
    reference = digest_ref(event.repository, event.digest)
    if harbor_for is None or setup.registry is None:
        return scanner.scan_image(reference)
    # Harbor has the vulnerabilities; the secret gate still needs trivy on every image.
    harbor = harbor_for(setup.registry)
    repository = harbor_repository(event.repository, setup.registry.project)
    vulnerabilities = harbor.vulnerability_report(setup.registry.project, repository, event.digest)
    return vulnerabilities.merged(scanner.scan_image(reference, vulnerabilities=False))


def _truncation(findings: tuple[Finding, ...]) -> tuple[str, ...]:
    left_out = len(findings) - MAX_FINDINGS_IN_EVENT
    return (f"{left_out} more findings not listed in this event",) if left_out > 0 else ()
