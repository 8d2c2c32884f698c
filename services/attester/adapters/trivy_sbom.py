"""The trivy CLI as the attester's SbomGenerator: CycloneDX JSON of an image, offline.

The image is read straight from the registry by digest (`--image-src remote`); no vulnerability
database is needed for an SBOM (`--skip-db-update --offline-scan`). Registry credentials go to
trivy in TRIVY_USERNAME / TRIVY_PASSWORD (environment, never argv), as in the scanner.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from services.attester.sbom import Sbom, SbomError
from shared.registry.transport import plain_http_allowed, with_tls_hint


class TrivySbom:
    def __init__(
        self,
        binary: str,
        cache_dir: str | Path,
        *,
        timeout_s: float = 600,
        registry_credentials: tuple[str, str] | None = None,
        insecure_hosts: frozenset[str] = frozenset(),
    ):
        self.binary = binary
        self.cache_dir = Path(cache_dir).expanduser()
        self.timeout_s = timeout_s
        self.registry_credentials = registry_credentials
        self.insecure_hosts = insecure_hosts

    def sbom(self, reference: str) -> Sbom:
        argv = [self.binary, "image", "--image-src", "remote", "--format", "cyclonedx", "--quiet"]
        argv += ["--skip-db-update", "--offline-scan", "--cache-dir", str(self.cache_dir)]
        argv += ["--timeout", f"{int(self.timeout_s)}s"]
        if plain_http_allowed(reference, self.insecure_hosts):
            argv.append("--insecure")
        env = dict(os.environ)
        if self.registry_credentials:
            env["TRIVY_USERNAME"], env["TRIVY_PASSWORD"] = self.registry_credentials
        try:
            result = subprocess.run(
                [*argv, reference], capture_output=True, env=env, timeout=self.timeout_s + 30
            )
        except FileNotFoundError:
            raise SbomError(f"trivy not found at {self.binary!r}: set KILN_TRIVY") from None
        except subprocess.TimeoutExpired:
            raise SbomError(f"trivy timed out after {self.timeout_s + 30:.0f}s on {reference}") from None
        if result.returncode != 0:
            last = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise SbomError(with_tls_hint(f"trivy exit status {result.returncode}: {last[0]}", reference))
        try:
            document = json.loads(result.stdout)
        except ValueError:
            raise SbomError("trivy printed no CycloneDX JSON") from None
        return Sbom.from_document(result.stdout, document)
