"""C toolchains per target platform: how a generated `.c` becomes an importable extension.

gcc is called directly (setuptools' build_ext costs more than the compile of a small module).
The host platform uses the host's gcc, the other platform Debian's cross gcc; both compile against
the headers of the target Python (target.py: the base image's, or the host's without one).
"""

from __future__ import annotations

import os
import platform as host
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from shared import platforms

from .target import TargetPython, ToolchainMissing, host_target

SUPPORTED_PLATFORMS = platforms.PLATFORM_NAMES
# No -g: images ship without debug info. -fwrapv / -fno-strict-aliasing as CPython builds itself.
OPTIMIZE_FLAGS = ("-O2", "-fPIC", "-fwrapv", "-fno-strict-aliasing", "-DNDEBUG", "-w")


@dataclass(frozen=True)
class Toolchain:
    platform: str
    compiler: str
    python: TargetPython

    @property
    def include_dirs(self) -> tuple[str, ...]:
        return self.python.include_dirs

    @property
    def ext_suffix(self) -> str:
        return self.python.ext_suffix

    def fingerprint(self) -> str:
        """Everything about this toolchain that changes the produced .so (part of the cache key):
        the headers by content, so the same headers extracted anywhere give the same key."""
        return "|".join((self.platform, self.compiler, self.python.headers_digest, *OPTIMIZE_FLAGS))

    def compile_command(self, c_file: Path, object_file: Path, ccache: str | None) -> list[str]:
        includes = [f"-I{d}" for d in self.include_dirs]
        launcher = [ccache] if ccache else []
        return [
            *launcher,
            self.compiler,
            "-c",
            *OPTIMIZE_FLAGS,
            *includes,
            str(c_file),
            "-o",
            str(object_file),
        ]

    def link_command(self, object_file: Path, extension: Path) -> list[str]:
        return [self.compiler, "-shared", str(object_file), "-o", str(extension)]


def host_platform() -> str:
    machine = host.machine().lower()
    found = platforms.host(machine)
    return found.name if found else f"linux/{machine}"


def normalize_platform(name: str) -> str:
    """Accept "linux/arm64", "arm64", "aarch64", "amd64", "x86_64"."""
    try:
        return platforms.parse(name.removeprefix("linux/")).name
    except ValueError:  # name the platform as it was asked for, not its stripped form
        choices = ", ".join(SUPPORTED_PLATFORMS)
        raise ValueError(f"unsupported platform {name!r}; use one of {choices}") from None


def platform_slug(platform: str) -> str:
    return platforms.arch_of(platform)


def toolchain_for(platform: str, python: TargetPython | None = None) -> Toolchain:
    """Compiler and headers for `platform`, for the CPython `python` (None: the host's Python);
    ToolchainMissing names the package to install."""
    platform = normalize_platform(platform)
    if platform == host_platform():
        compiler = shutil.which((sysconfig.get_config_var("CC") or "gcc").split()[0])
        if not compiler:
            raise ToolchainMissing("no C compiler found for the host: apt-get install -y gcc")
    else:
        target = platforms.parse(platform)
        compiler = f"{target.triplet}-gcc"
        if not shutil.which(compiler):
            raise ToolchainMissing(
                f"{compiler} not found (needed for {platform}): apt-get install -y {target.cross_gcc_package}"
            )
    return Toolchain(platform, compiler, python or host_target(platform, host_platform()))


def find_ccache() -> str | None:
    return shutil.which("ccache")


def ccache_size(nbytes: int) -> str:
    """ccache's max_size syntax: an explicit unit (a bare number means GB to ccache); 0 = no limit."""
    return f"{max(1, nbytes // 1024)}Ki" if nbytes else "0"


def build_extension(
    toolchain: Toolchain,
    c_file: Path,
    extension: Path,
    *,
    ccache: str | None,
    ccache_dir: Path,
    ccache_max_bytes: int = 0,
) -> None:
    """Compile and link one module; raises CalledProcessError with the compiler's stderr."""
    object_file = extension.with_suffix(".o")
    # ccache caches only compile (-c) calls, hence two steps; the link is cheap.
    # Depend mode: ccache hashes the compiler's own -MD output instead of running the
    # preprocessor first, which keeps a cold (all-miss) build within a few % of plain gcc.
    # CCACHE_MAXSIZE: ccache evicts from its own directory to stay within its share of the bound.
    env = {
        **os.environ,
        "CCACHE_DIR": str(ccache_dir),
        "CCACHE_DEPEND": "1",
        "CCACHE_MAXSIZE": ccache_size(ccache_max_bytes),
        "LC_ALL": "C",
    }
    for command in (
        toolchain.compile_command(c_file, object_file, ccache),
        toolchain.link_command(object_file, extension),
    ):
        subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    object_file.unlink(missing_ok=True)
