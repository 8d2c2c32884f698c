"""Harbor's scan results for one artifact, through shared.registry.HarborClient (the one Harbor
client: its scan API methods speak Harbor's v2.0 REST API, this module polls and parses).

- the artifact `?with_scan_overview=true`: the overview is keyed by report MIME type;
  `scan_status` says whether a report exists;
- `POST .../artifacts/{digest}/scan` when there is none; then poll the overview until `Success`,
  at most `poll_timeout_s`;
- `.../artifacts/{digest}/additions/vulnerabilities`: the findings, keyed by MIME type.
Connection failures and 5xx are retried (bounded, `attempts`); any other answer fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TypeVar

import httpx

from services.scanner.report import (
    MalformedReport,
    ScanError,
    ScannerCrashed,
    ScanReport,
    normalise_severity,
)
from shared.events.scan import Finding
from shared.registry import HarborClient, RegistryError, RegistryUnavailable

REPORT_MIME_TYPES = (
    "application/vnd.security.vulnerability.report; version=1.1",
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
)
FINISHED_BADLY = {"Error", "Stopped"}
T = TypeVar("T")


def harbor_repository(repository: str, project: str) -> str:
    """`harbor.example.com/kiln/tenants/t/axion-web-demo` -> `tenants/t/axion-web-demo`."""
    _, _, path = repository.partition("/")
    prefix = f"{project}/"
    if not path.startswith(prefix):
        raise ScanError(f"repository {repository!r} is not in Harbor project {project!r}")
    return path[len(prefix) :]


@dataclass
class HarborScanner:
    """The scanner's view of Harbor: one artifact's vulnerability report, scanning it first when
    Harbor has none. Each report opens its own HarborClient (a scan is minutes apart)."""

    base_url: str
    _: KW_ONLY
    credentials: tuple[str, str] | None = field(repr=False)  # never in a traceback or log line
    poll_timeout_s: float = 60
    poll_interval_s: float = 2
    verify_tls: bool = True
    attempts: int = 3
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def _client(self) -> HarborClient:
        username, password = self.credentials or (None, None)
        # An http:// URL the operator wrote down (KILN_SCANNER_HARBOR_URL) is theirs to allow.
        url = httpx.URL(self.base_url)
        insecure = (url.netloc.decode(),) if url.scheme == "http" else ()
        return HarborClient(
            self.base_url, username, password, insecure_hosts=insecure, timeout=30, verify_tls=self.verify_tls
        )

    def vulnerability_report(self, project: str, repository: str, digest: str) -> ScanReport:
        def call(method: str, what: str, fn: Callable[[], T]) -> T:
            return self._retried(method, f"{repository}@{digest} {what}", fn)

        with self._client() as harbor:

            def status() -> str | None:
                body = call(
                    "GET",
                    "scan overview",
                    lambda: harbor.scan_overview(project, repository, digest, REPORT_MIME_TYPES),
                )
                overview = _by_mime_type(body.get("scan_overview") if isinstance(body, dict) else None)
                return str(overview.get("scan_status")) if overview else None

            current = status()
            if current is None or current == "Not Scanned":
                call("POST", "scan", lambda: harbor.start_scan(project, repository, digest))
            deadline = self.clock() + self.poll_timeout_s
            while current != "Success":
                if current in FINISHED_BADLY:
                    raise ScannerCrashed(f"Harbor scan of {repository}@{digest} ended with status {current}")
                if self.clock() >= deadline:
                    raise ScannerCrashed(
                        f"Harbor did not finish scanning {repository}@{digest} within "
                        f"{self.poll_timeout_s:.0f}s (last status: {current or 'none'})"
                    )
                self.sleep(self.poll_interval_s)
                current = status()
            additions = call(
                "GET",
                "vulnerabilities",
                lambda: harbor.vulnerabilities(project, repository, digest, REPORT_MIME_TYPES),
            )
        return ScanReport(scanner="harbor", vulnerabilities=_findings(additions, repository))

    def _retried(self, method: str, what: str, fn: Callable[[], T]) -> T:
        """Connection failures and 5xx are retried (bounded); any other surprise is an error at once."""
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except RegistryUnavailable as exc:
                last = f"HTTP {exc.status}" if exc.status else str(exc)
            except RegistryError as exc:
                raise ScanError(f"Harbor {method} {what} answered {exc.status}: {exc}") from None
            if attempt < self.attempts:
                self.sleep(self.poll_interval_s * attempt)
        raise ScannerCrashed(f"Harbor {method} {what} unreachable after {self.attempts} attempts: {last}")


def _by_mime_type(keyed: Any) -> dict[str, Any]:
    if not isinstance(keyed, dict):
        return {}
    for mime in REPORT_MIME_TYPES:
        if isinstance(keyed.get(mime), dict):
            return keyed[mime]
    return {}


def _findings(additions: Any, repository: str) -> tuple[Finding, ...]:
    report = _by_mime_type(additions)
    items = report.get("vulnerabilities")
    if not report or not isinstance(items, list):
        raise MalformedReport(f"Harbor returned no readable vulnerability report for {repository}")
    findings = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id"):
            raise MalformedReport(f"Harbor vulnerability report for {repository} has an entry without an id")
        findings.append(
            Finding(
                id=str(item["id"]),
                severity=normalise_severity(item.get("severity")),
                package=str(item.get("package", "")),
                installed=str(item.get("version", "")),
                fixed=str(item.get("fix_version") or ""),
                title=str(item.get("description") or "")[:300],
            )
        )
    return tuple(findings)
