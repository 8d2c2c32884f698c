"""The one place that wires the scanner: settings -> trivy, Harbor, config, handler table.

Unit tests call `bootstrap(settings, scanner=Fake(), ...)` with fakes; the worker calls it with
nothing but settings.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable

from services.scanner.adapters import advisories
from services.scanner.adapters.advisories import WithAdvisories
from services.scanner.adapters.harbor import HarborScanner
from services.scanner.adapters.trivy import TrivyCli
from services.scanner.handlers import HarborFor, PackageScanSetup, PackageSetupFn, on_image_pushed
from services.scanner.ports import AuditScanner
from services.scanner.settings import ScannerSettings
from shared.bus import SqlIdempotencyGuard
from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.dispatch import HandlerTable
from shared.bus.give_up import end_build_failed
from shared.bus.idempotency import IdempotencyGuard
from shared.bus.worker import Consumer, Worker
from shared.config import RegistryConfig, ScanPolicy, load_config
from shared.events import ImagePushed
from shared.naming import registry_host_of
from shared.registry.transport import log_insecure_hosts, parse_hosts

SOURCE = "scanner"


def registry_credentials(settings: ScannerSettings) -> tuple[str, str] | None:
    if settings.registry_username and settings.registry_password:
        return settings.registry_username, settings.registry_password.get_secret_value()
    return None


def trivy_from(settings: ScannerSettings) -> TrivyCli | WithAdvisories:
    """Trivy, with the offline advisory database behind it when one is configured (an unreadable
    one stops the scanner at start-up: the operator named it, so it must be there)."""
    trivy = TrivyCli(
        settings.trivy,
        settings.trivy_cache_dir,
        db_repository=settings.trivy_db_repository,
        db_download=settings.trivy_db_download,
        timeout_s=settings.trivy_timeout_s,
        attempts=settings.trivy_attempts,
        retry_delay_s=settings.trivy_retry_delay_s,
        registry_credentials=registry_credentials(settings),
        insecure_hosts=parse_hosts(settings.registry_insecure_hosts),
    )
    try:
        database = advisories.resolve(settings.scanner_advisory_db)
    except advisories.AdvisoryDbUnreadable as exc:
        raise SystemExit(
            f"scanner: {exc} (set KILN_SCANNER_ADVISORY_DB to a file, or '' to turn it off)"
        ) from None
    if database is None:
        return trivy
    return WithAdvisories(trivy, database, severity=settings.scanner_advisory_severity)


def package_setup_from(settings: ScannerSettings) -> PackageSetupFn:
    """Config is read per image, so a policy change applies to the next build without a restart."""

    def package_setup(package: str) -> PackageScanSetup:
        if not settings.config_path:
            return PackageScanSetup(policy=ScanPolicy())
        config = load_config(settings.config_path).package(package)
        return PackageScanSetup(policy=config.scan, registry=config.deployment.registry, audit=config.audit)

    return package_setup


def harbor_from(settings: ScannerSettings) -> HarborFor:
    def harbor_for(registry: RegistryConfig) -> HarborScanner:
        return HarborScanner(
            settings.harbor_url or f"https://{registry.host}",
            credentials=registry_credentials(settings),
            poll_timeout_s=settings.harbor_poll_timeout_s,
            poll_interval_s=settings.harbor_poll_interval_s,
            verify_tls=settings.harbor_verify_tls,
        )

    return harbor_for


def bootstrap(
    settings: ScannerSettings,
    *,
    scanner: AuditScanner | None = None,
    package_setup: PackageSetupFn | None = None,
    harbor_for: HarborFor | None = None,
    today: Callable[[], dt.date] = dt.date.today,
    guard: IdempotencyGuard | None = None,
    with_database: bool = True,
) -> Worker:
    """The scanner's worker; `parts["trivy"]` is its scanner (the audit command uses it)."""
    log_insecure_hosts(parse_hosts(settings.registry_insecure_hosts), logging.getLogger("kiln.scanner"))
    trivy = scanner or trivy_from(settings)
    cancel = CancelWatch()
    if guard is None and with_database:
        from shared.db import make_engine, make_sessions

        guard = SqlIdempotencyGuard(make_sessions(make_engine(settings.database_url)))
    handlers: HandlerTable = {
        ImagePushed: functools.partial(
            on_image_pushed,
            scanner=trivy,
            package_setup=package_setup or package_setup_from(settings),
            harbor_for=harbor_for or harbor_from(settings),
            registry_host=registry_host_of(settings.registry_url),
            today=today,
            is_cancelled=cancel.is_cancelled,
        )
    }
    return Worker(
        source=SOURCE,
        settings=settings,
        consumers=[
            Consumer(t.SCANNER_IMAGES, handlers, give_up=dict.fromkeys(handlers, end_build_failed("scan")))
        ],
        guard=guard,
        cancel=cancel,
        health_port=settings.health_port,
        parts={"trivy": trivy},
    )
