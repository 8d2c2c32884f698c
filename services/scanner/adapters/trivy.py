"""The trivy CLI as the scanner's ImageScanner and AuditScanner.

Images are scanned straight from the registry (`--image-src remote`): the image that was pushed,
by digest, with no docker daemon and no tarball on the scanner's machine. Registry credentials go
to trivy in TRIVY_USERNAME / TRIVY_PASSWORD (environment, never argv, so `ps` cannot show them).

Failure classes: binary missing -> ScannerMissing (no retry); non-zero exit or timeout ->
ScannerCrashed after `attempts` tries with a growing delay; unreadable JSON -> MalformedReport.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from services.scanner.adapters.trivy_db import TrivyDatabase
from services.scanner.image_audit import PACKAGE_MODES, ImageAudit, trivy_flags
from services.scanner.report import (
    NO_VULN_DB_NOTE,
    MalformedReport,
    ScannerCrashed,
    ScannerMissing,
    ScanReport,
)
from services.scanner.trivy_json import parse_trivy_report, parse_trivy_results
from shared.logging import REDACT
from shared.registry.transport import plain_http_allowed, with_tls_hint

log = logging.getLogger("kiln.scanner")

# Directories of a source tree that are not source: tools, caches, build output.
SKIPPED_SOURCE_DIRS = (
    ".git",
    ".venv",
    "venv",
    "node_modules",
    ".kiln",
    ".ruff_cache",
    ".pytest_cache",
    "build",
)


class TrivyCli:
    def __init__(
        self,
        binary: str,
        cache_dir: str | Path,
        *,
        db_repository: str | None = None,
        db_download: bool = True,
        timeout_s: float = 600,
        attempts: int = 3,
        retry_delay_s: float = 2.0,
        registry_credentials: tuple[str, str] | None = None,
        insecure_hosts: frozenset[str] = frozenset(),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.binary = binary
        self.cache_dir = Path(cache_dir).expanduser()
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.retry_delay_s = retry_delay_s
        self.registry_credentials = registry_credentials
        self.insecure_hosts = insecure_hosts
        self._sleep = sleep
        self.database = TrivyDatabase(
            binary, self.cache_dir, repository=db_repository, download=db_download, timeout_s=timeout_s
        )

    # -- ports ------------------------------------------------------------------------------

    def scan_image(self, reference: str, *, vulnerabilities: bool = True) -> ScanReport:
        """Secrets always; vulnerabilities when asked and a database is there."""
        with_vulns = vulnerabilities and self.database.ensure()
        args = ["image", "--image-src", "remote", "--scanners", "vuln,secret" if with_vulns else "secret"]
        if plain_http_allowed(reference, self.insecure_hosts):  # loopback or operator-listed only
            args.append("--insecure")
        report = self._scan([*args, *self._db_flags(with_vulns), reference], with_vulns=with_vulns)
        return report if vulnerabilities else _without_vuln_state(report)

    def python_packages(self, reference: str) -> list[tuple[str, str]]:
        """(name, version) of every Python package installed in the image, from Trivy's
        CycloneDX SBOM (its offline package analyzers read the dist-info/egg-info metadata)."""
        args = ["image", "--image-src", "remote", "--format", "cyclonedx", "--quiet", "--offline-scan"]
        args += [
            "--skip-db-update",
            "--cache-dir",
            str(self.cache_dir),
            "--timeout",
            f"{int(self.timeout_s)}s",
        ]
        if plain_http_allowed(reference, self.insecure_hosts):
            args.append("--insecure")
        output = self._run([self.binary, *args, reference])
        try:
            components = json.loads(output).get("components") or []
        except (ValueError, AttributeError):
            raise MalformedReport("trivy printed no CycloneDX JSON for the package list") from None
        return sorted(
            {
                (str(c.get("name")), str(c.get("version")))
                for c in components
                if str(c.get("purl", "")).startswith("pkg:pypi/") and c.get("name") and c.get("version")
            }
        )

    def scan_secrets(self, path: str | Path) -> ScanReport:
        skips = [arg for d in SKIPPED_SOURCE_DIRS for arg in ("--skip-dirs", d)]
        return _without_vuln_state(self._scan(["fs", "--scanners", "secret", *skips, str(path)]))

    def scan_config(self, path: str | Path) -> ScanReport:
        return _without_vuln_state(self._scan(["config", "--skip-check-update", str(path)]))

    def scan_dependencies(self, path: str | Path) -> ScanReport:
        with_vulns = self.database.ensure()
        if not with_vulns:
            return ScanReport(scanner="trivy", vuln_db="skipped", notes=(self._no_db_note(),))
        args = ["fs", "--scanners", "vuln", "--offline-scan", *self._db_flags(True), str(path)]
        return self._scan(args, with_vulns=True)

    def audit_image(self, reference: str, modes: Sequence[str]) -> ImageAudit:
        """The audit stage's one run on a pushed image (services/scanner/image_audit.py)."""
        with_vulns = bool(set(modes) & set(PACKAGE_MODES)) and self.database.ensure()
        args = ["image", "--image-src", "remote", *trivy_flags(modes, with_vulns=with_vulns)]
        if plain_http_allowed(reference, self.insecure_hosts):  # loopback or operator-listed only
            args.append("--insecure")
        common = ["--format", "json", "--quiet", "--cache-dir", str(self.cache_dir)]
        common += ["--timeout", f"{int(self.timeout_s)}s", *self._db_flags(with_vulns)]
        output = self._run([self.binary, *args[:1], *common, *args[1:], reference])
        note = "" if with_vulns else self._no_db_note()
        return ImageAudit(parse_trivy_results(output), vulnerabilities_checked=with_vulns, note=note)

    # -- running ----------------------------------------------------------------------------

    def _db_flags(self, with_vulns: bool) -> list[str]:
        return ["--skip-db-update", "--skip-java-db-update"] if with_vulns else []

    def _no_db_note(self) -> str:
        reason = self.database.last_error
        return f"{NO_VULN_DB_NOTE} ({reason})" if reason else NO_VULN_DB_NOTE

    def _scan(self, args: Sequence[str], *, with_vulns: bool = False) -> ScanReport:
        common = ["--format", "json", "--quiet", "--cache-dir", str(self.cache_dir)]
        common += ["--timeout", f"{int(self.timeout_s)}s"]
        output = self._run([self.binary, *args[:1], *common, *args[1:]])
        report = parse_trivy_report(output, vuln_db="ok" if with_vulns else "skipped")
        if not with_vulns:
            report = ScanReport(
                scanner=report.scanner,
                vulnerabilities=report.vulnerabilities,
                secrets=report.secrets,
                misconfigurations=report.misconfigurations,
                vuln_db="skipped",
                notes=(self._no_db_note(),),
            )
        return report

    def _run(self, argv: list[str]) -> str:
        env = dict(os.environ)
        if self.registry_credentials:
            env["TRIVY_USERNAME"], env["TRIVY_PASSWORD"] = self.registry_credentials
        last_error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                result = subprocess.run(
                    argv, capture_output=True, text=True, env=env, timeout=self.timeout_s + 30
                )
            except FileNotFoundError:
                raise ScannerMissing(f"trivy not found at {self.binary!r}: set KILN_TRIVY") from None
            except PermissionError:
                raise ScannerMissing(f"trivy at {self.binary!r} is not executable") from None
            except subprocess.TimeoutExpired:
                last_error = f"timed out after {self.timeout_s + 30:.0f}s"
            else:
                if result.returncode == 0:
                    return result.stdout
                last_error = f"exit status {result.returncode}: {_fatal_line(result.stderr)}"
                last_error = with_tls_hint(last_error, argv[-1])
            log.warning("trivy %s failed (attempt %d/%d): %s", argv[1], attempt, self.attempts, last_error)
            if attempt < self.attempts:
                self._sleep(self.retry_delay_s * attempt)
        raise ScannerCrashed(f"trivy {argv[1]} failed {self.attempts} time(s), last: {last_error}")


def _without_vuln_state(report: ScanReport) -> ScanReport:
    """Scans that never look at vulnerabilities must not claim a skipped database."""
    return ScanReport(
        scanner=report.scanner,
        vulnerabilities=(),
        secrets=report.secrets,
        misconfigurations=report.misconfigurations,
        vuln_db="ok",
    )


def _fatal_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    fatal = [line for line in lines if "FATAL" in line or "ERROR" in line]
    chosen = (fatal or lines or ["no output"])[-1]
    return REDACT(chosen.strip())[:800]
