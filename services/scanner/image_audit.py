"""The audit stage's input: one trivy run on the pushed image, split into the four modes.

What is audited is what ships: the pushed digest, pulled from the operator's registry (the
scanner holds no source tree, and the branch's own files could differ from the image). Nothing of
the branch runs: trivy reads files and the image config, it executes nothing.

Modes -> trivy flags -> the result class each mode reads:

- deps: `--list-all-pkgs` (+ `vuln` with a database) -> `lang-pkgs`: the Python packages
  installed in the image (the tier venv's dist-info).
- image: the same flags -> `os-pkgs`: the base image's OS packages.
- secrets: `--scanners secret --image-config-scanners secret` -> `secret`: every layer's
  files, and the image config's ENV, history and labels.
- config: `--image-config-scanners misconfig` -> `config`: the image config read back as the
  Dockerfile it was built from (user, health check, secrets in ENV).

One run costs ≈0.6 s on a cached base (measured here, docs/performance.md); four runs would
pull and unpack the same layers four times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.scanner.trivy_json import TrivyResult
from shared.events.scan import AuditMode

# Trivy's result class -> the audit mode it belongs to.
MODE_OF_CLASS: dict[str, AuditMode] = {
    "lang-pkgs": "deps",
    "os-pkgs": "image",
    "secret": "secrets",
    "config": "config",
}
PACKAGE_MODES = ("deps", "image")


@dataclass(frozen=True)
class ImageAudit:
    """One trivy run on one image: its results, and whether vulnerabilities were looked for."""

    results: tuple[TrivyResult, ...]
    vulnerabilities_checked: bool
    note: str = ""


def trivy_flags(modes: Sequence[str], *, with_vulns: bool) -> list[str]:
    scanners = ["vuln"] if with_vulns and set(modes) & set(PACKAGE_MODES) else []
    config_scanners = []
    if "secrets" in modes:
        scanners.append("secret")
        config_scanners.append("secret")
    if "config" in modes:
        config_scanners.append("misconfig")
    flags = ["--scanners", ",".join(scanners)]  # empty: list packages, look for nothing
    if config_scanners:
        flags += ["--image-config-scanners", ",".join(config_scanners)]
    if set(modes) & set(PACKAGE_MODES):
        flags.append("--list-all-pkgs")
    return flags
