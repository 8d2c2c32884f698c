"""An offline advisory database for Python packages, beside Trivy.

Trivy's vulnerability database cannot be downloaded everywhere (not on our build machines, not
on an air-gapped farm without a mirror). Then the image's Python packages (read by Trivy from
the image's `*.dist-info` / `*.egg-info` metadata, offline) are matched against an advisory file
in safety-db's format (`insecure_full.json`: package -> [{cve, id, specs, advisory}], `$meta`
with the data's timestamp). The PyPI package `safety-db` ships a real one (2021 data, 1,380
packages): it is the default (`KILN_SCANNER_ADVISORY_DB=safety-db`); a path names another file;
empty turns it off. Such a file has no severities: every match counts as
`KILN_SCANNER_ADVISORY_SEVERITY` (HIGH unless set), so the package's scan policy gates on it
like on any finding, allow-list and expiry included. OS packages are not covered: the report
says so, and how old the data is.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from services.scanner.report import ScanReport
from shared.events.scan import Finding

BUNDLED = "safety-db"  # the value of KILN_SCANNER_ADVISORY_DB that means "the PyPI package's file"
MAX_TITLE = 300


class AdvisoryDbUnreadable(Exception):
    """The configured advisory file is missing or not in safety-db's format."""


@dataclass(frozen=True)
class Advisory:
    package: str  # canonical name
    affected: SpecifierSet
    id: str  # the CVE when there is one, else the advisory's own id
    text: str

    @property
    def fixed(self) -> str:
        """The first fixed version when the range is a single `<X`, else unknown."""
        specs = list(self.affected)
        return specs[0].version if len(specs) == 1 and specs[0].operator == "<" else ""


@dataclass(frozen=True)
class AdvisoryDatabase:
    name: str  # e.g. "safety-db 2021.7.17"
    as_of: dt.date | None
    advisories: dict[str, tuple[Advisory, ...]]

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> AdvisoryDatabase:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise AdvisoryDbUnreadable(f"advisory database {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise AdvisoryDbUnreadable(f"advisory database {path}: not a mapping of packages")
        meta = raw.pop("$meta", {}) or {}
        stamp = meta.get("timestamp")
        as_of = dt.datetime.fromtimestamp(stamp, dt.UTC).date() if isinstance(stamp, int | float) else None
        advisories: dict[str, tuple[Advisory, ...]] = {}
        for package, entries in raw.items():
            parsed = tuple(
                _advisories(canonicalize_name(package), entries if isinstance(entries, list) else [])
            )
            if parsed:
                advisories[canonicalize_name(package)] = parsed
        if not advisories:
            raise AdvisoryDbUnreadable(f"advisory database {path}: no advisories in safety-db's format")
        return cls(name=name or Path(path).name, as_of=as_of, advisories=advisories)

    def findings(self, packages: Iterable[tuple[str, str]], severity: str) -> tuple[Finding, ...]:
        """One finding per (package, advisory) whose range holds the installed version."""
        found: dict[tuple[str, str], Finding] = {}
        for name, installed in packages:
            try:
                version = Version(installed)
            except InvalidVersion:
                continue
            for advisory in self.advisories.get(canonicalize_name(name), ()):
                if advisory.affected.contains(version, prereleases=True):
                    found[(advisory.id, name)] = Finding(
                        id=advisory.id,
                        severity=severity,  # type: ignore[arg-type]
                        package=name,
                        installed=installed,
                        fixed=advisory.fixed,
                        title=advisory.text[:MAX_TITLE],
                    )
        return tuple(sorted(found.values(), key=lambda f: (f.package, f.id)))

    def describe(self) -> str:
        when = f"advisories as of {self.as_of.isoformat()}" if self.as_of else "advisories of unknown date"
        return f"{self.name} ({when})"


def _advisories(package: str, entries: list) -> Iterable[Advisory]:
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        try:
            affected = SpecifierSet(",".join(str(s) for s in entry.get("specs") or []))
        except InvalidSpecifier:
            continue
        if not str(affected):
            continue
        ident = str(entry.get("cve") or entry.get("id") or "").split(",")[0].strip()
        if ident:
            yield Advisory(package, affected, ident, str(entry.get("advisory") or ""))


def resolve(setting: str) -> AdvisoryDatabase | None:
    """KILN_SCANNER_ADVISORY_DB: "" -> off; "safety-db" -> the installed package's file; a path."""
    if not setting:
        return None
    if setting == BUNDLED:
        spec = importlib.util.find_spec("safety_db")
        if spec is None or not spec.submodule_search_locations:
            raise AdvisoryDbUnreadable(
                "KILN_SCANNER_ADVISORY_DB=safety-db but the safety-db package is not installed"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "insecure_full.json"
        from importlib.metadata import version

        return AdvisoryDatabase.load(path, name=f"safety-db {version('safety-db')}")
    return AdvisoryDatabase.load(setting)


class WithAdvisories:
    """An ImageScanner that fills in vulnerabilities from an advisory database when the inner
    scanner (Trivy) had no vulnerability database; with one, Trivy's report stands as it is."""

    def __init__(self, inner, database: AdvisoryDatabase, *, severity: str = "HIGH"):
        self.inner = inner
        self.database = database
        self.severity = severity

    def scan_image(self, reference: str, *, vulnerabilities: bool = True) -> ScanReport:
        report = self.inner.scan_image(reference, vulnerabilities=vulnerabilities)
        if not vulnerabilities or report.vuln_db == "ok":
            return report
        packages = self.inner.python_packages(reference)
        findings = self.database.findings(packages, self.severity)
        note = (
            f"vulnerabilities: {len(packages)} Python packages checked offline against "
            f"{self.database.describe()}; OS packages not checked (no Trivy database)"
        )
        return ScanReport(
            scanner=report.scanner,
            vulnerabilities=findings,
            secrets=report.secrets,
            misconfigurations=report.misconfigurations,
            vuln_db="ok",
            notes=(note,),
        )

    def __getattr__(self, name: str):  # the audit commands' scan_secrets, scan_config ... pass through
        return getattr(self.inner, name)
