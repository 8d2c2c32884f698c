"""Tier venv layers, prepared on the host and cached once per tier x platform x requirements hash.

Why on the host: a `RUN pip install` inside a build cannot verify TLS here, and for arm64 it
would need QEMU. pip itself can fetch wheels for another platform (`--platform ... --only-binary`),
and pure-Python wheels are platform-free, so the layer is just files we COPY in.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Manylinux tags pip may pick wheels for, by image platform, when the host is another platform.
_PIP_PLATFORMS = {
    "linux/amd64": ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"),
    "linux/arm64": ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"),
}
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class TierPreparationFailed(RuntimeError):
    """pip could not produce the tier's packages; the message carries pip's last lines."""


@dataclass(frozen=True)
class TierSpec:
    name: str
    requirements: tuple[str, ...]  # requirement lines, comments and blanks removed
    arm_exclude: tuple[str, ...] = ()

    def lines_for(self, platform: str) -> tuple[str, ...]:
        """The requirement lines for `platform`: arm-incompatible packages dropped on arm64."""
        if platform != "linux/arm64" or not self.arm_exclude:
            return self.requirements
        excluded = {_canonical(name) for name in self.arm_exclude}
        return tuple(line for line in self.requirements if _canonical(_name_of(line)) not in excluded)

    def requirements_hash(self, platform: str) -> str:
        text = "\n".join(sorted(self.lines_for(platform)))
        return hashlib.sha256(f"{platform}\n{text}".encode()).hexdigest()[:16]


def parse_requirements(text: str) -> tuple[str, ...]:
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return tuple(lines)


def host_platform() -> str:
    machine = os.uname().machine
    return "linux/arm64" if machine in ("aarch64", "arm64") else "linux/amd64"


def pip_command(lines_file: Path, target: Path, platform: str) -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-compile", "--target", str(target), "-r", str(lines_file)]
    if platform != host_platform():
        command += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"]
        for tag in _PIP_PLATFORMS[platform]:
            command += ["--platform", tag]
    return command


class TierVenvCache:
    """`<root>/<tier>-<arch>-<hash>/` holds a finished tier; built in a temp dir, then renamed."""

    def __init__(self, root: Path):
        self.root = root

    def path_for(self, tier: TierSpec, platform: str) -> Path:
        arch = platform.split("/", 1)[1]
        return self.root / f"{tier.name}-{arch}-{tier.requirements_hash(platform)}"

    def prepare(self, tier: TierSpec, platform: str) -> Path:
        final = self.path_for(tier, platform)
        if final.is_dir():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=self.root))
        try:
            target = work / "site"
            target.mkdir()
            lines = tier.lines_for(platform)
            if lines:
                requirements = work / "requirements.txt"
                requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
                result = subprocess.run(
                    pip_command(requirements, target, platform), capture_output=True, text=True, timeout=900
                )
                if result.returncode != 0:
                    tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
                    raise TierPreparationFailed(f"pip failed for tier {tier.name} ({platform}):\n{tail}")
            _drop_bytecode(target)
            try:
                target.rename(final)  # atomic: concurrent workers either see a full tier or none
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final


def _drop_bytecode(root: Path) -> None:
    # .pyc files embed timestamps; the layer must be byte-identical wherever it is prepared.
    for cache in list(root.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def _name_of(line: str) -> str:
    match = _REQUIREMENT_NAME.match(line)
    return match.group(1) if match else line


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
