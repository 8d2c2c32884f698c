"""Runs repository-controlled code where it can reach nothing (issue #13, finding 5).

Every step that executes what a pushed branch controls (Cython and the C compiler on its modules,
the build of an allowed sdist, MkDocs with its hooks and plugins) goes through `Sandbox.run`.
The mechanism is bubblewrap (Debian's `bubblewrap`, the `bwrap` of Flatpak):

- `--unshare-all`: own user, mount, pid, ipc, uts and network namespaces. The new network
  namespace has only a loopback of its own, so the broker, the database, the Docker API on
  127.0.0.1:2375 and the metadata address are not reachable: there is no route at all.
- `--clearenv` plus bwrap itself started with an empty environment: the child sees only the
  variables the caller names, and no process in the sandbox holds Kiln's settings (bwrap's own
  monitor process would otherwise be pid 1 of the sandbox, with the caller's environment).
- `--uid/--gid 65534` (nobody), no capabilities, `--new-session` (no TIOCSTI into our terminal),
  `--die-with-parent` (a worker that dies takes the step with it).
- the file system is a fresh tmpfs: /usr (and the merged-/usr links) and the paths the caller
  names read-only, only the caller's work directories writable, a private /tmp and /dev, and no
  /proc at all, so no /proc/<pid>/environ of any Kiln process exists to be read.

A sandbox that cannot be created fails the step with SandboxUnavailable, naming what to fix,
unless the operator opted out with KILN_ALLOW_UNSANDBOXED=true: then the command runs unconfined
(still with the empty environment) and every run logs a warning.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

NOBODY = 65534
# The directories every sandbox sees read-only: programs, libraries, the C toolchain's headers.
SYSTEM_DIRS = ("/usr",)
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc holds what a dynamic loader, a TLS client and Python's locale handling look up, and
# nothing of Kiln's: only these entries of it are bound.
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl", "ca-certificates",
               "localtime", "nsswitch.conf", "passwd", "group", "mime.types")  # fmt: skip
OPT_OUT_SETTING = "KILN_ALLOW_UNSANDBOXED"
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or may not create namespaces here; the message says what to change."""


@dataclass(frozen=True)
class Sandbox:
    """`required=False` is the operator's explicit opt-out (KILN_ALLOW_UNSANDBOXED=true)."""

    required: bool = True
    bwrap: str = "bwrap"

    def run(
        self,
        argv: list[str],
        *,
        read_only: Iterable[Path | str] = (),
        writable: Iterable[Path | str] = (),
        env: Mapping[str, str] | None = None,
        network: bool = False,
        cwd: Path | str | None = None,
        timeout: float | None = None,
        stdout=subprocess.PIPE,
    ) -> subprocess.CompletedProcess:
        """Run `argv` confined; output is captured as text. `env` is all the child sees."""
        command = self.command(argv, read_only=read_only, writable=writable, env=env, network=network,
                               cwd=cwd)  # fmt: skip
        return subprocess.run(
            command, env=self._outer_env(env), cwd=None if self.available() else cwd, stdout=stdout,
            stderr=subprocess.PIPE, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def popen(self, argv: list[str], **options) -> subprocess.Popen:
        """As run(), for a caller that reads the child's output as it comes (stdout piped, text)."""
        env = options.get("env")
        command = self.command(argv, **options)
        return subprocess.Popen(
            command, env=self._outer_env(env), cwd=None if self.available() else options.get("cwd"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def command(
        self,
        argv: list[str],
        *,
        read_only: Iterable[Path | str] = (),
        writable: Iterable[Path | str] = (),
        env: Mapping[str, str] | None = None,
        network: bool = False,
        cwd: Path | str | None = None,
        image_root: Path | None = None,
    ) -> list[str]:
        """`image_root`: a container image's unpacked file system, read-only, instead of the host's
        /usr (the daemonless image proof)."""
        if not self.available():
            log.warning(
                "UNSANDBOXED: running repository-controlled %s without a sandbox (%s=true)",
                Path(argv[0]).name, OPT_OUT_SETTING,
            )  # fmt: skip
            return list(argv)
        options = ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
        options += ["--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL"]
        if network:
            options.append("--share-net")
        options += ["--ro-bind", str(image_root), "/"] if image_root else _system_binds()
        options += ["--dev", "/dev", "--tmpfs", "/tmp"]
        for source, target in _existing(read_only):
            options += ["--ro-bind", source, target]
        for source, target in _existing(writable):
            options += ["--bind", source, target]
        for name, value in {**BASE_ENV, **(env or {})}.items():
            options += ["--setenv", name, value]
        if cwd is not None:
            options += ["--chdir", str(cwd)]
        return [self.bwrap, *options, "--", *argv]

    def available(self) -> bool:
        """True when the sandbox works here; False only when the operator opted out. Otherwise a
        sandbox that cannot be created raises SandboxUnavailable (checked once per process)."""
        problem = _probe(self.bwrap)
        if problem is None:
            return True
        if self.required:
            raise SandboxUnavailable(problem)
        return False

    def _outer_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        # bwrap starts with nothing of ours; unsandboxed (opt-out) the child gets just `env`.
        return {} if self.available() else {**BASE_ENV, **(env or {})}


REQUIRED = Sandbox()  # the default everywhere: no sandbox, no step


def python_paths() -> list[Path]:
    """What a Python child needs read-only: this interpreter's venv and the installation behind it,
    and for an editable install the source directories of Kiln's own packages (code, no settings)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    import services
    import shared

    for package in (services, shared):
        paths.add(Path(package.__file__).resolve().parent)
    return sorted(paths)


@functools.cache
def _probe(bwrap: str) -> str | None:
    found = shutil.which(bwrap)
    advice = (
        "the sandbox for repository code cannot be created: {}. Install bubblewrap "
        f"(apt-get install -y bubblewrap) and allow unprivileged user namespaces (in Docker: the "
        f"seccomp profile container/seccomp-sandbox.json, see docs/architecture.md 'Sandboxed steps'), "
        f"or set {OPT_OUT_SETTING}=true to run repository code unconfined"
    )
    if not found:
        return advice.format(f"{bwrap} not found")
    try:
        done = subprocess.run(
            _probe_command(found), env={}, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as failed:
        return advice.format(f"{bwrap}: {failed}")
    if done.returncode != 0:
        return advice.format(f"{bwrap} said: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return None


def _probe_command(bwrap: str) -> list[str]:
    return [bwrap, "--unshare-all", "--die-with-parent", "--clearenv", "--uid", str(NOBODY), "--gid",
            str(NOBODY), *_system_binds(), "--dev", "/dev", "--tmpfs", "/tmp", "--", "true"]  # fmt: skip


def _system_binds() -> list[str]:
    binds: list[str] = []
    for directory in SYSTEM_DIRS:
        binds += ["--ro-bind", directory, directory]
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            binds += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            binds += ["--ro-bind", link, link]
    for entry in ETC_ENTRIES:
        binds += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
    return binds


def _existing(paths: Iterable[Path | str]) -> list[tuple[str, str]]:
    """(what is mounted, where): the resolved directory at the path the caller uses, so a path
    through a link works inside and the mount itself follows no link later. Missing paths skipped."""
    binds = {str(Path(p).absolute()): str(Path(p).resolve()) for p in paths if Path(p).exists()}
    return [(source, target) for target, source in binds.items()]
