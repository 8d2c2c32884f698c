"""C toolchains per target platform: how a generated `.c` becomes an importable extension.

gcc is called directly (setuptools' build_ext costs more than the compile of a small module).
The host platform uses the running interpreter's headers; the other platform is cross-compiled
with Debian's toolchain and the target's multiarch Python headers.
"""

from __future__ import annotations

import os
import platform as host
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from shared import platforms

SUPPORTED_PLATFORMS = platforms.PLATFORM_NAMES
# No -g: images ship without debug info. -fwrapv / -fno-strict-aliasing as CPython builds itself.
OPTIMIZE_FLAGS = ("-O2", "-fPIC", "-fwrapv", "-fno-strict-aliasing", "-DNDEBUG", "-w")


class ToolchainMissing(RuntimeError):
    """The C compiler or Python headers for a platform are not installed."""


@dataclass(frozen=True)
class Toolchain:
    platform: str
    compiler: str
    include_dirs: tuple[str, ...]
    ext_suffix: str

    def fingerprint(self) -> str:
        """Everything about this toolchain that changes the produced .so (part of the cache key)."""
        return "|".join((self.platform, self.compiler, *self.include_dirs, *OPTIMIZE_FLAGS))

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


def toolchain_for(platform: str) -> Toolchain:
    """Compiler and headers for `platform`; ToolchainMissing names the package to install."""
    platform = normalize_platform(platform)
    if platform == host_platform():
        return _native_toolchain(platform)
    return _cross_toolchain(platform)


def _native_toolchain(platform: str) -> Toolchain:
    compiler = shutil.which((sysconfig.get_config_var("CC") or "gcc").split()[0])
    if not compiler:
        raise ToolchainMissing("no C compiler found for the host: apt-get install -y gcc")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        raise ToolchainMissing(f"Python.h missing in {include}: apt-get install -y python3.11-dev")
    return Toolchain(platform, compiler, (include,), sysconfig.get_config_var("EXT_SUFFIX"))


def _cross_toolchain(platform: str) -> Toolchain:
    target = platforms.parse(platform)
    triplet = target.triplet
    compiler = f"{triplet}-gcc"
    if not shutil.which(compiler):
        raise ToolchainMissing(
            f"{compiler} not found (needed for {platform}): apt-get install -y {target.cross_gcc_package}"
        )
    version = f"python{sysconfig.get_python_version()}"
    generic, specific = f"/usr/include/{version}", f"/usr/include/{triplet}/{version}"
    if not (Path(specific) / "pyconfig.h").is_file() or not (Path(generic) / "Python.h").is_file():
        raise ToolchainMissing(
            f"Python headers for {platform} missing ({specific}/pyconfig.h): "
            f"dpkg --add-architecture {target.arch} && apt-get update && "
            f"apt-get install -y {target.python_headers_package}"
        )
    abi = sys.implementation.cache_tag  # "cpython-311"
    return Toolchain(platform, compiler, (generic, specific), f".{abi}-{triplet}.so")


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
