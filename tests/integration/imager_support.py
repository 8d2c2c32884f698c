"""Shared setup for the imager's integration tests: compiled example artifacts and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "monorepo"
PLATFORMS = ("linux/amd64", "linux/arm64")


def required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run `./kiln-dev services` and `source .kiln/dev.env` (or ./kiln-dev test)"
        )
    return value


def dockerfile_operator_config(
    directory: Path,
    package: str,
    registry_host: str,
    base_images: dict[str, str],
    *,
    services: tuple[str, ...] = ("svc",),
    project: str = "kiln",
) -> Path:
    """An operator config whose `services` are plain-Dockerfile builds: the imager accepts a job
    only for a service, registry and base image its operator config names (services/imager/receipt.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    entries = "".join(
        f"      {name}: {{command: [python3, /srv/app.py], dockerfile: Dockerfile}}\n" for name in services
    )
    bases = ", ".join(f'{platform}: "{image}"' for platform, image in base_images.items())
    path.write_text(
        f"""
version_map: {{"*": prism}}
factories: {{app: {{path: app}}}}
packages:
  {package}:
    factories: [app]
    keys: {{dir: {directory.parent / "keys"}}}
    services:
{entries}    deployment:
      platforms: [{", ".join(base_images)}]
      registry: {{type: registry, host: "{registry_host}", project: {project}}}
      base_images: {{{bases}}}
"""
    )
    return path


def compile_example(out: Path) -> dict[str, Path]:
    """The compiler as a subprocess (a service never imports another): one tree per platform."""
    command = [sys.executable, "-m", "services.compiler", "compile", str(EXAMPLE), "--out", str(out)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return {platform: out / platform.split("/")[1] for platform in PLATFORMS}


def start_worker(platform: str, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "services.imager", "--platform", platform, *extra],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def stop_worker(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
