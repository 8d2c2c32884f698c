"""Trivy's JSON report (SchemaVersion 2) read into a ScanReport.

The shape, per result: `Results[].{Target, Class, Vulnerabilities[], Secrets[], Misconfigurations[]}`;
a vulnerability is `{VulnerabilityID, PkgName, InstalledVersion, FixedVersion, Severity, Title}`,
an image secret carries `Layer.{Digest, DiffID}`. Anything else is a MalformedReport: a report we
cannot read must never count as a clean one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.scanner.report import MalformedReport, ScanReport, VulnDbState, normalise_severity
from shared.events.scan import Finding

SUPPORTED_SCHEMA = 2


@dataclass(frozen=True)
class TrivyResult:
    """One entry of `Results`: its class (`os-pkgs`, `lang-pkgs`, `secret`, `config`, …), what
    trivy looked at, what it found there, and how many packages it listed (`--list-all-pkgs`)."""

    kind: str
    target: str
    vulnerabilities: tuple[Finding, ...] = ()
    secrets: tuple[Finding, ...] = ()
    misconfigurations: tuple[Finding, ...] = ()
    packages: int = 0


def parse_trivy_report(raw: str | bytes, *, vuln_db: VulnDbState = "ok") -> ScanReport:
    results = parse_trivy_results(raw)
    return ScanReport(
        scanner="trivy",
        vulnerabilities=tuple(f for r in results for f in r.vulnerabilities),
        secrets=tuple(f for r in results for f in r.secrets),
        misconfigurations=tuple(f for r in results for f in r.misconfigurations),
        vuln_db=vuln_db,
    )


def parse_trivy_results(raw: str | bytes) -> tuple[TrivyResult, ...]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedReport(f"trivy output is not JSON: {exc}") from None
    if not isinstance(document, dict) or "SchemaVersion" not in document:
        raise MalformedReport("trivy output is not a Trivy report (no SchemaVersion)")
    if document["SchemaVersion"] != SUPPORTED_SCHEMA:
        raise MalformedReport(
            f"trivy report SchemaVersion {document['SchemaVersion']!r}, expected {SUPPORTED_SCHEMA}"
        )
    results = document.get("Results")
    if results is None:  # Trivy omits Results when a scan found no targets
        results = []
    if not isinstance(results, list):
        raise MalformedReport("trivy report: Results is not a list")
    parsed = []
    for index, result in enumerate(results):
        where = f"Results[{index}]"
        if not isinstance(result, dict):
            raise MalformedReport(f"trivy report: {where} is not an object")
        target = str(result.get("Target", ""))
        parsed.append(
            TrivyResult(
                kind=str(result.get("Class", "")),
                target=target,
                vulnerabilities=tuple(
                    _vulnerability(item, target, where) for item in _items(result, "Vulnerabilities", where)
                ),
                secrets=tuple(_secret(item, target, where) for item in _items(result, "Secrets", where)),
                misconfigurations=tuple(
                    _misconfiguration(item, target, where)
                    for item in _items(result, "Misconfigurations", where)
                    if item.get("Status", "FAIL") == "FAIL"
                ),
                packages=len(_items(result, "Packages", where)),
            )
        )
    return tuple(parsed)


def _items(result: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    items = result.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedReport(f"trivy report: {where}.{key} is not a list of objects")
    return items


def _required(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedReport(f"trivy report: {where} entry without {key}")
    return value


def _vulnerability(item: dict[str, Any], target: str, where: str) -> Finding:
    return Finding(
        id=_required(item, "VulnerabilityID", f"{where}.Vulnerabilities"),
        severity=normalise_severity(item.get("Severity")),
        package=str(item.get("PkgName", "")),
        installed=str(item.get("InstalledVersion", "")),
        fixed=str(item.get("FixedVersion", "") or ""),
        title=str(item.get("Title", ""))[:300],
        file=target,
    )


def _secret(item: dict[str, Any], target: str, where: str) -> Finding:
    # Never copy `Match` or `Code`: even masked, the secret's surroundings stay out of events.
    layer = item.get("Layer") or {}
    return Finding(
        id=_required(item, "RuleID", f"{where}.Secrets"),
        severity=normalise_severity(item.get("Severity")),
        title=str(item.get("Title", "")),
        file=target,
        layer=str(layer.get("Digest") or layer.get("DiffID") or "") if isinstance(layer, dict) else "",
        line=_line(item.get("StartLine")),
    )


def _misconfiguration(item: dict[str, Any], target: str, where: str) -> Finding:
    # Title, never Message or Code: DS-0031's code lines quote the ENV line, value included.
    cause = item.get("CauseMetadata")
    return Finding(
        id=_required(item, "ID", f"{where}.Misconfigurations"),
        severity=normalise_severity(item.get("Severity")),
        title=str(item.get("Title") or item.get("Message") or "")[:300],
        file=target,
        line=_line(cause.get("StartLine")) if isinstance(cause, dict) else None,
    )


def _line(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
