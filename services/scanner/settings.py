"""The scanner's settings: where Trivy and its database are, and how long to wait for Harbor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import KilnSettings


class ScannerSettings(KilnSettings):
    trivy: str = Field("trivy", description="path of the trivy binary (or a name on PATH)")
    trivy_cache_dir: str = Field("~/.cache/kiln/trivy", description="trivy's DB and layer cache")
    # Sites with a mirror: e.g. "mirror.example.com/aquasec/trivy-db:2" (comma-separated for several).
    trivy_db_repository: str | None = None
    # Try to download the vulnerability DB when it is missing or out of date; off = never touch the network.
    trivy_db_download: bool = True
    trivy_timeout_s: float = Field(600, gt=0)
    # A crashed trivy run is retried this many times in all (bounded), then the stage fails.
    trivy_attempts: int = Field(3, ge=1, le=10)
    trivy_retry_delay_s: float = Field(2.0, ge=0)
    # Harbor API base, e.g. https://harbor.example.com; empty = https://<deployment.registry.host>.
    harbor_url: str | None = None
    harbor_poll_timeout_s: float = Field(60, gt=0)
    harbor_poll_interval_s: float = Field(2, gt=0)
    harbor_verify_tls: bool = True
    # Without a Trivy database, Python packages are checked against this offline advisory file
    # (adapters/advisories.py): "safety-db" = the PyPI package's bundled file, a path, "" = off.
    scanner_advisory_db: str = "safety-db"
    # Such files carry no severities: the severity every match is counted at by the scan policy.
    scanner_advisory_severity: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"] = "HIGH"
