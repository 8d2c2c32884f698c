"""Stage commands run by their own service's CLI in a subprocess (the CLI never imports services)."""

from __future__ import annotations

import subprocess
import sys

# kiln <command> → python -m <module> <command> ...
STAGE_COMMANDS = {
    "compile": "services.compiler",
    "scaffold": "services.deployer",
    "deploy": "services.deployer",
    "targets": "services.deployer",
    "audit": "services.scanner",
    "registry-prune": "services.imager",
    "verify": "services.attester",  # SBOM, signatures and provenance of an image (docs/attest.md)
}


def forward(command: str, args: list[str]) -> int:
    if command == "config":
        argv = [sys.executable, "-m", "shared.config", *args]
    else:
        argv = [sys.executable, "-m", STAGE_COMMANDS[command], command, *args]
    return subprocess.call(argv)
