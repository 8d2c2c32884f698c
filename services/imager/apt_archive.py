"""Debian packages for an image's system layer, resolved and fetched by the host's apt.

apt runs with a state of its own per architecture and sources file (`<work>/apt/<arch>-<hash>/`):
its lists, its downloads, and as its dpkg status the base image's /var/lib/dpkg/status, so it
resolves only what the base image lacks, for the image's architecture (APT::Architecture; the
host's own architectures and package state are never used or touched). The operator's sources
file (KILN_APT_SOURCES, default the host's debian.sources) says which mirror; apt verifies its
signed Release files and every .deb against them. Nothing is installed and no maintainer script
runs: apt only resolves (`-s`) and downloads (`--download-only`); deb_layer.py unpacks.

Isolated from the host's apt configuration on purpose: /etc/apt/apt.conf.d holds hooks
(`APT::Update::Post-Invoke…`) that would run on the host at each `update`. The operator's own apt
settings (a proxy, Check-Valid-Until for a snapshot mirror) go in KILN_APT_CONFIG, read instead.
apt gets an empty environment (no KILN_* secret), like pip in tier_venv.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

APT_TIMEOUT_S = 900
APT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
RETRY_UPDATE_AFTER_S = 300  # a failed refresh is tried again this much later, not at every job
_INST = re.compile(r"^Inst (\S+) (?:\[([^\]]+)\] )?\((\S+) .*\[([^\]]+)\]\)")
_NAMED = re.compile(r"(?:package|Package) '?([a-z0-9][a-z0-9+.-]+)'?|^ ?([a-z0-9][a-z0-9+.-]+) : Depends")
_SIGNATURE_WORDS = ("NO_PUBKEY", "not signed", "signature", "EXPKEYSIG", "is not valid yet")


class SystemPackagesFailed(RuntimeError):
    """The packages cannot be had as asked (unknown name, unmet dependency, bad sources): the job
    fails with the reason (image.failed); retrying cannot fix it. `names`: the requested packages
    apt's errors name."""

    def __init__(self, message: str, names: frozenset[str] = frozenset()):
        super().__init__(message)
        self.names = names


class AptUnavailable(RuntimeError):
    """The mirror could not be reached (or apt timed out): transient, the bus retries the job."""


@dataclass(frozen=True)
class AptPolicy:
    """The operator's apt settings: KILN_APT_SOURCES, KILN_APT_CONFIG, KILN_APT_LISTS_MAX_AGE_S."""

    sources: Path = Path("/etc/apt/sources.list.d/debian.sources")
    config: Path | None = None  # an apt.conf file: proxy, Check-Valid-Until, …
    lists_max_age_s: float = 86400.0


@dataclass(frozen=True, order=True)
class Resolved:
    """One package apt would add: what keys the layer, and whether it replaces a base package."""

    name: str
    version: str
    arch: str
    replaces_version: str | None = None  # the base image's older version, when apt upgrades it

    def key(self) -> str:
        return f"{self.name}={self.version}:{self.arch}"


def apt_env(home: Path, config: Path) -> dict[str, str]:
    """All apt sees of the worker: no KILN_* setting, no DOCKER_HOST, no proxy variables."""
    return {"PATH": APT_PATH, "HOME": str(home), "LANG": "C.UTF-8", "APT_CONFIG": str(config)}


class AptArchive:
    """apt's private state for one architecture and sources file."""

    def __init__(self, root: Path, arch: str, policy: AptPolicy):
        if not policy.sources.is_file():
            raise SystemPackagesFailed(
                f"KILN_APT_SOURCES={policy.sources} is not a file: point it at an apt sources file "
                "(deb822 .sources or one-line .list) for the base image's Debian release"
            )
        sources = policy.sources.read_bytes()
        extra = policy.config.read_bytes() if policy.config and policy.config.is_file() else b""
        digest = hashlib.sha256(sources + b"\0" + extra).hexdigest()[:12]
        self.arch, self.policy = arch, policy
        self.dir = root / f"{arch}-{digest}"
        for sub in ("lists/partial", "cache/partial", "sources.d", "empty", "state", "bases", "resolved"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        suffix = ".list" if policy.sources.suffix == ".list" else ".sources"
        _write_if_changed(self.dir / "sources.d" / f"kiln{suffix}", sources)
        main = policy.config if policy.config else Path("/dev/null")
        conf = f'Dir::Etc::Parts "{self.dir / "empty"}";\nDir::Etc::main "{main}";\n'
        _write_if_changed(self.dir / "apt.conf", conf.encode())

    def options(self, status: Path, archives: Path | None = None) -> list[str]:
        settings = {
            "Dir::State": self.dir / "state",
            "Dir::State::Lists": self.dir / "lists",
            "Dir::State::status": status,
            "Dir::Cache": self.dir / "cache",
            "Dir::Cache::archives": archives or self.dir / "cache",
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Dir::Log": self.dir / "state",
            "Dir::Etc::SourceList": "/dev/null",
            "Dir::Etc::SourceParts": self.dir / "sources.d",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": self.dir / "empty",
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            "APT::Install-Recommends": "false",
            "APT::Install-Suggests": "false",
            "APT::Get::AllowUnauthenticated": "false",
            "Acquire::AllowInsecureRepositories": "false",
            "Acquire::Languages": "none",
            "Acquire::GzipIndexes": "true",  # lists stay compressed: ~10 MB per architecture, not 50
            "APT::Cmd::Pattern-Only": "true",  # a name is a name, never a regex or glob
            "Debug::NoLocking": "true",  # our own flock below; never the host's dpkg lock
        }
        return [f"-o{key}={value}" for key, value in settings.items()]

    @contextlib.contextmanager
    def lists(self, log) -> Iterator[str]:
        """Fresh package lists (refreshed when older than KILN_APT_LISTS_MAX_AGE_S), held shared
        while used; yields their fingerprint (the signed Release files' hash)."""
        stamp = self.dir / "updated"
        if _age(stamp) > self.policy.lists_max_age_s:
            with self._locked(fcntl.LOCK_EX):
                if _age(stamp) > self.policy.lists_max_age_s:
                    self._update(stamp, log)
        with self._locked(fcntl.LOCK_SH):
            yield self._fingerprint()

    def resolve(self, packages: tuple[str, ...], status: Path) -> list[Resolved]:
        """What apt adds to the base for `packages` (dependencies included, recommends not),
        without removing anything of the base (`--no-remove`)."""
        command = ["apt-get", *self.options(status), "install", "-s", "-qq", "-y", "--no-remove"]
        result = self._run([*command, "--", *packages])
        if result.returncode != 0:
            errors = _problems(result) or _lines(result)[-12:]
            named = {m.group(1) or m.group(2) for line in errors for m in _NAMED.finditer(line)}
            raise SystemPackagesFailed("\n".join(errors[-12:]), frozenset(named & set(packages)))
        plan = []
        for line in result.stdout.splitlines():
            match = _INST.match(line)
            if match:
                name, old, version, arch = match.groups()
                plan.append(Resolved(name, version, arch, old))
        return sorted(plan)

    def download(self, packages: tuple[str, ...], status: Path, dest: Path) -> list[Path]:
        (dest / "partial").mkdir(parents=True, exist_ok=True)
        command = ["apt-get", *self.options(status, dest), "install", "--download-only", "-qq", "-y"]
        result = self._run([*command, "--no-remove", "--", *packages])
        if result.returncode != 0:
            problems = _problems(result) or _lines(result)[-12:]
            raise AptUnavailable("apt-get could not download the packages:\n" + "\n".join(problems[-12:]))
        return sorted(dest.glob("*.deb"))

    def _update(self, stamp: Path, log) -> None:
        log(f"apt-get update ({self.arch}, sources {self.policy.sources})")
        result = self._run(["apt-get", *self.options(Path("/dev/null")), "update", "-qq"])
        problems = _problems(result)
        for line in _lines(result):
            if line.startswith("W:") and line not in problems:
                log(line)  # e.g. apt downloading unsandboxed: the work dir is not the _apt user's
        if result.returncode == 0 and not problems:
            for memo in (self.dir / "resolved").iterdir():  # keyed on the lists before: never hit again
                memo.unlink(missing_ok=True)
            stamp.touch()
            return
        text = "\n".join(problems[-12:] or _lines(result)[-12:])
        if any(word in text for word in _SIGNATURE_WORDS):
            raise SystemPackagesFailed(
                f"apt could not verify the signed Release files of KILN_APT_SOURCES={self.policy.sources} "
                f"(its Signed-By keyring?):\n{text}"
            )
        if not any((self.dir / "lists").glob("*Release")):
            raise AptUnavailable(f"apt-get update failed and there are no package lists yet:\n{text}")
        log(f"apt-get update failed; using the lists from before (retried in {RETRY_UPDATE_AFTER_S} s):")
        log(text)
        stamp.touch()
        retry_at = time.time() - self.policy.lists_max_age_s + RETRY_UPDATE_AFTER_S
        os.utime(stamp, (retry_at, retry_at))

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in sorted((self.dir / "lists").glob("*Release")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:16]

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        with open(self.dir / "lock", "a+") as handle:
            fcntl.flock(handle, mode)
            yield

    def _run(self, command: list[str]) -> subprocess.CompletedProcess:
        if shutil.which("apt-get", path=APT_PATH) is None:
            raise SystemPackagesFailed("apt-get is not installed on this worker: system packages need it")
        try:
            return subprocess.run(
                command, env=apt_env(self.dir / "state", self.dir / "apt.conf"), capture_output=True,
                text=True, timeout=APT_TIMEOUT_S, cwd=self.dir,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise AptUnavailable(f"apt-get did not finish in {APT_TIMEOUT_S} s") from None


def _lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]


def _problems(result: subprocess.CompletedProcess) -> list[str]:
    """apt's errors, and the warnings that mean a source was not read (update exits 0 on those)."""
    failed = ("Failed to fetch", "index files failed", " : Depends", " : PreDepends", " : Breaks")
    return [
        line
        for line in _lines(result)
        if line.startswith(("E:", "Err:")) or any(word in line for word in failed)
    ]


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.is_file() or path.read_bytes() != data:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
