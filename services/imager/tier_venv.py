"""Tier venv layers, prepared on the host and cached once per tier x platform x requirements hash.

Why on the host: a `RUN pip install` inside a build cannot verify TLS here, and for arm64 it
would need QEMU. pip itself can fetch wheels for another platform (`--platform ... --only-binary`),
and pure-Python wheels are platform-free, so the layer is just files we COPY in.

The requirement lines are repository content: they only name packages (shared/requirement_lines.py
refuses options and direct references). pip always resolves wheels only (`--only-binary=:all:`,
for the host platform too: an sdist runs its setup code) against the operator's index
(KILN_PIP_INDEX_URL, else pip's own configuration), with an empty environment: no KILN_* secret,
no DOCKER_HOST. Installing a wheel runs none of its code. Only when the operator allows sdists
(KILN_PIP_ALLOW_SDISTS) does pip build one, and then pip runs inside the sandbox
(shared/sandbox.py) as nobody, seeing only its work directory.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared import platforms
from shared.requirement_lines import RefusedRequirement, check_requirement, requirement_lines
from shared.sandbox import REQUIRED, Sandbox, SandboxUnavailable, python_paths

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
        if platform != platforms.ARM64.name or not self.arm_exclude:
            return self.requirements
        excluded = {_canonical(name) for name in self.arm_exclude}
        return tuple(line for line in self.requirements if _canonical(_name_of(line)) not in excluded)

    def requirements_hash(self, platform: str) -> str:
        text = "\n".join(sorted(self.lines_for(platform)))
        return hashlib.sha256(f"{platform}\n{text}".encode()).hexdigest()[:16]


def parse_requirements(text: str, origin: str = "requirements") -> tuple[str, ...]:
    """Checked requirement lines; TierPreparationFailed names the refused line and its file."""
    try:
        return tuple(requirement_lines(text, origin))
    except RefusedRequirement as refused:
        raise TierPreparationFailed(str(refused)) from None


@dataclass(frozen=True)
class PipPolicy:
    """The operator's pip settings: KILN_PIP_INDEX_URL, KILN_PIP_ALLOW_SDISTS, KILN_PIP_CERT."""

    index_url: str | None = None
    allow_sdists: bool = False
    cert: str | None = None  # CA bundle, e.g. of a TLS-intercepting proxy


WHEELS_ONLY = PipPolicy()


def host_platform() -> str:
    return (platforms.host() or platforms.DEFAULT).name


_VERSION = re.compile(r"^3\.\d{1,2}$")
_ABI = re.compile(r"^cp3\d{1,2}t?$")


@dataclass(frozen=True)
class PythonTag:
    """The CPython a tier is installed for: the one the artifact was compiled for (its manifest
    says, `.kiln-compile.json`), which is its base image's."""

    version: str  # "3.13"
    abi: str  # "cp313"

    def __post_init__(self) -> None:
        # From the artifact, and handed to pip: only these shapes.
        if not _VERSION.fullmatch(self.version) or not _ABI.fullmatch(self.abi):
            raise TierPreparationFailed(
                f"the artifact's Python is {self.version!r} ({self.abi!r}), not a CPython version and ABI tag"
            )
        if self.abi.removeprefix("cp").removesuffix("t") != self.version.replace(".", ""):
            raise TierPreparationFailed(f"the artifact's ABI {self.abi} is not CPython {self.version}'s")

    @classmethod
    def host(cls) -> PythonTag:
        """The worker's own interpreter: what pip installs for when told nothing."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return cls(version, f"cp{version.replace('.', '')}{'t' if 't' in sys.abiflags else ''}")


def pip_command(
    lines_file: Path,
    target: Path,
    platform: str,
    policy: PipPolicy = WHEELS_ONLY,
    python: PythonTag | None = None,
) -> list[str]:
    """pip for `platform` and `python` (None: the worker's own); any other platform or Python
    than the worker's is fetched as wheels for that platform, version and ABI."""
    python = python or PythonTag.host()
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--no-input", "--no-compile", "--target", str(target), "-r", str(lines_file)]
    if policy.index_url:
        command += ["--index-url", policy.index_url]
    if policy.cert:
        command += ["--cert", policy.cert]
    if platform != host_platform() or python != PythonTag.host():
        command += ["--only-binary=:all:", "--python-version", python.version, "--implementation", "cp"]
        command += ["--abi", python.abi]
        # The manylinux tags pip may pick wheels for when the target is not the worker itself.
        for tag in platforms.parse(platform).pip_platforms:
            command += ["--platform", tag]
    elif not policy.allow_sdists:
        command.append("--only-binary=:all:")
    return command


def pip_env(work: Path) -> dict[str, str]:
    """All pip sees of the worker: no KILN_* setting, no DOCKER_HOST, no proxy credentials. pip's
    own configuration files (/etc/pip.conf, /etc/xdg/pip/) stay the operator's channel."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"}


class TierVenvCache:
    """`<root>/<tier>-<arch>-<hash>/` holds a finished tier; built in a temp dir, then renamed."""

    def __init__(self, root: Path, pip: PipPolicy = WHEELS_ONLY, sandbox: Sandbox = REQUIRED):
        self.root = root
        self.pip = pip
        self.sandbox = sandbox

    def path_for(self, tier: TierSpec, platform: str, python: PythonTag | None = None) -> Path:
        """`<tier>-<arch>-<abi>-<hash>`: another Python is another tier (its wheels differ)."""
        arch = platforms.arch_of(platform)
        abi = (python or PythonTag.host()).abi
        name = f"{tier.name}-{arch}-{abi}-{tier.requirements_hash(platform)}"
        if self.pip != WHEELS_ONLY:  # another index or sdists: never the same cached tier
            name += "-" + hashlib.sha256(repr(self.pip).encode()).hexdigest()[:8]
        return self.root / name

    def prepare(self, tier: TierSpec, platform: str, python: PythonTag | None = None) -> Path:
        final = self.path_for(tier, platform, python)
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
                for number, line in enumerate(lines, start=1):  # they reached us through an artifact
                    _check(line, f"tier {tier.name} line {number}")
                requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
                command = pip_command(requirements, target, platform, self.pip, python)
                result = self._run_pip(command, work)
                if result.returncode != 0:
                    tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
                    shown = f"{platform}, {(python or PythonTag.host()).abi}"
                    raise TierPreparationFailed(
                        f"pip failed for tier {tier.name} ({shown}):\n{tail}{_sdist_hint(tail, self.pip)}"
                    )
            _drop_bytecode(target)
            try:
                target.rename(final)  # atomic: concurrent workers either see a full tier or none
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final

    def _run_pip(self, command: list[str], work: Path) -> subprocess.CompletedProcess:
        if not self.pip.allow_sdists:
            # Wheels only: pip downloads and unpacks, no package code runs; it needs the network.
            return subprocess.run(command, env=pip_env(work), capture_output=True, text=True, timeout=900)
        # An sdist's build runs its setup code: confined to the work dir, as nobody, no secrets.
        # It still needs the index, hence network=True (docs/architecture.md, "Sandboxed steps").
        try:
            return self.sandbox.run(
                command, read_only=python_paths(), writable=[work], env=pip_env(work), network=True,
                cwd=work, timeout=900,
            )  # fmt: skip
        except SandboxUnavailable as unavailable:
            raise TierPreparationFailed(f"sdists are allowed but {unavailable}") from None


def _check(line: str, where: str) -> None:
    try:
        check_requirement(line, where)
    except RefusedRequirement as refused:
        raise TierPreparationFailed(str(refused)) from None


def _sdist_hint(pip_output: str, policy: PipPolicy) -> str:
    if policy.allow_sdists or "matching distribution" not in pip_output:
        return ""
    return (
        "\n(only wheels are installed: a package without a wheel for this platform is refused; "
        "the operator may allow sdists with KILN_PIP_ALLOW_SDISTS=true)"
    )


def _drop_bytecode(root: Path) -> None:
    # .pyc files embed timestamps; the layer must be byte-identical wherever it is prepared.
    for cache in list(root.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)


def _name_of(line: str) -> str:
    match = _REQUIREMENT_NAME.match(line)
    return match.group(1) if match else line


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
