"""Harbor's scan results for one artifact, through its v2.0 REST API.

- `GET /api/v2.0/projects/{p}/repositories/{r}/artifacts/{digest}?with_scan_overview=true`: the
  overview is keyed by report MIME type; `scan_status` says whether a report exists.
- `POST .../artifacts/{digest}/scan` when there is none; then poll the overview until `Success`,
  at most `poll_timeout_s`.
- `GET .../artifacts/{digest}/additions/vulnerabilities`: the findings, keyed by MIME type.
Repository names containing '/' are URL-encoded twice (`a/b` -> `a%252Fb`), as Harbor requires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from services.scanner.report import (
    MalformedReport,
    ScanError,
    ScannerCrashed,
    ScanReport,
    normalise_severity,
)
from shared.events.scan import Finding

REPORT_MIME_TYPES = (
    "application/vnd.security.vulnerability.report; version=1.1",
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
)
FINISHED_BADLY = {"Error", "Stopped"}


def harbor_repository(repository: str, project: str) -> str:
    """`harbor.example.com/kiln/tenants/t/axion-web-demo` -> `tenants/t/axion-web-demo`."""
    _, _, path = repository.partition("/")
    prefix = f"{project}/"
    if not path.startswith(prefix):
        raise ScanError(f"repository {repository!r} is not in Harbor project {project!r}")
    return path[len(prefix) :]


class HarborClient:
    def __init__(
        self,
        base_url: str,
        *,
        credentials: tuple[str, str] | None,
        poll_timeout_s: float = 60,
        poll_interval_s: float = 2,
        verify_tls: bool = True,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.poll_timeout_s = poll_timeout_s
        self.poll_interval_s = poll_interval_s
        self.verify_tls = verify_tls
        self.attempts = attempts
        self._sleep = sleep
        self._clock = clock

    def vulnerability_report(self, project: str, repository: str, digest: str) -> ScanReport:
        artifact = (
            f"/api/v2.0/projects/{quote(project, safe='')}/repositories/"
            f"{quote(quote(repository, safe=''), safe='')}/artifacts/{digest}"
        )
        with httpx.Client(
            base_url=self.base_url,
            auth=self.credentials,
            verify=self.verify_tls,
            timeout=30,
            headers={"X-Accept-Vulnerabilities": ", ".join(REPORT_MIME_TYPES)},
        ) as client:
            status = self._scan_status(client, artifact)
            if status is None or status == "Not Scanned":
                self._request(client, "POST", f"{artifact}/scan", expect=(202, 409))
            deadline = self._clock() + self.poll_timeout_s
            while status != "Success":
                if status in FINISHED_BADLY:
                    raise ScannerCrashed(f"Harbor scan of {repository}@{digest} ended with status {status}")
                if self._clock() >= deadline:
                    raise ScannerCrashed(
                        f"Harbor did not finish scanning {repository}@{digest} within "
                        f"{self.poll_timeout_s:.0f}s (last status: {status or 'none'})"
                    )
                self._sleep(self.poll_interval_s)
                status = self._scan_status(client, artifact)
            additions = self._request(client, "GET", f"{artifact}/additions/vulnerabilities").json()
        return ScanReport(scanner="harbor", vulnerabilities=_findings(additions, repository))

    def _scan_status(self, client: httpx.Client, artifact: str) -> str | None:
        body = self._request(client, "GET", artifact, params={"with_scan_overview": "true"}).json()
        overview = _by_mime_type(body.get("scan_overview") if isinstance(body, dict) else None)
        return str(overview.get("scan_status")) if overview else None

    def _request(
        self, client: httpx.Client, method: str, path: str, *, expect=(200,), params=None
    ) -> httpx.Response:
        """Connection failures and 5xx are retried (bounded); any other surprise is an error at once."""
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = client.request(method, path, params=params)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code in expect:
                    return response
                if response.status_code < 500:
                    raise ScanError(
                        f"Harbor {method} {path} answered {response.status_code}: {response.text[:300]}"
                    )
                last = f"HTTP {response.status_code}"
            if attempt < self.attempts:
                self._sleep(self.poll_interval_s * attempt)
        raise ScannerCrashed(f"Harbor {method} {path} unreachable after {self.attempts} attempts: {last}")


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
