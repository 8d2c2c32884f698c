"""The CPython a platform's output is compiled for: its version, ABI (the module suffix) and the
headers gcc compiles against.

The compiler service reads it from the package's base image (services/compiler/base_python/);
without one (the standalone command, a plain-Dockerfile package) it is the host's Python, as
`host_target` finds it: the running interpreter's own headers for the host platform, Debian's
multiarch headers (`libpython3.X-dev:<arch>`) for the other one.

Cython itself runs in the host's interpreter whatever the target: the C it writes holds
`#if PY_VERSION_HEX` branches and compiles against any CPython it supports
(`check_cython_supports`).
"""

from __future__ import annotations

import hashlib
import re
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import Cython

from shared import platforms

# SOABI: `cpython-313-<triplet>`, `cpython-313t-<triplet>` (free-threaded), for Kiln's platforms.
_TRIPLETS = "|".join(re.escape(p.triplet) for p in platforms.PLATFORMS)
_SOABI = re.compile(rf"^cpython-(?P<nodot>3\d{{1,2}})(?P<flags>[a-z]*)-(?P<triplet>{_TRIPLETS})$")
# The oldest Cython release that compiles for each CPython (Cython's changelog). Older targets
# than the first key are refused; newer ones than the last are compiled with a warning.
_CYTHON_FOR_PYTHON = {(3, 8): (3, 0, 0), (3, 12): (3, 0, 0), (3, 13): (3, 0, 11), (3, 14): (3, 1, 0)}
OLDEST_TARGET = min(_CYTHON_FOR_PYTHON)


class ToolchainMissing(RuntimeError):
    """The C compiler or Python headers for a platform are not installed."""


@dataclass(frozen=True)
class TargetPython:
    version: str  # "3.13"
    soabi: str  # "cpython-313-aarch64-linux-gnu": what the module suffix says
    include_dirs: tuple[str, ...]  # what gcc gets as -I, Python.h first
    headers_digest: str  # the headers' content: part of the .so cache key, wherever they lie
    origin: str = "the host's Python"  # where version and headers were read (log lines)

    def __post_init__(self) -> None:
        match = _SOABI.fullmatch(self.soabi)
        if not match or match["nodot"] != self.version.replace(".", ""):
            raise ValueError(f"SOABI {self.soabi!r} is not a CPython {self.version} ABI on Linux")

    @property
    def ext_suffix(self) -> str:
        """`.cpython-313-aarch64-linux-gnu.so`: the file name CPython looks for."""
        return f".{self.soabi}.so"

    @property
    def abi_tag(self) -> str:
        """`cp313` (`cp313t` free-threaded): the wheel ABI tag pip is given for the tier venvs."""
        match = _SOABI.fullmatch(self.soabi)
        assert match is not None  # checked in __post_init__
        return f"cp{match['nodot']}{match['flags']}"

    @property
    def triplet(self) -> str:
        match = _SOABI.fullmatch(self.soabi)
        assert match is not None
        return match["triplet"]

    def marker(self) -> dict[str, str]:
        """What the compiled tree says about its Python (`.kiln-compile.json`, `_COMPILED`): the
        imager installs the tier venv for this version and ABI."""
        cache_tag = self.soabi.rsplit("-", 3)[0]  # "cpython-313"
        return {
            "python_abi": f"{cache_tag}:{self.soabi}",
            "python_version": self.version,
            "abi": self.abi_tag,
        }


def headers_digest(include_dirs: tuple[str, ...]) -> str:
    """sha256 over every header's name and bytes (about 200 files, 1.4 MB: a few ms)."""
    hasher = hashlib.sha256()
    for directory in include_dirs:
        root = Path(directory)
        for header in sorted(root.rglob("*.h")):
            hasher.update(f"{header.relative_to(root)}\0".encode())
            hasher.update(hashlib.sha256(header.read_bytes()).digest())
    return hasher.hexdigest()


def host_version() -> str:
    return sysconfig.get_python_version()


def host_target(platform: str, host: str) -> TargetPython:
    """The host's Python for `platform` (`host` is the host's platform): the standalone command's
    target, and any compile whose package has no base image. ToolchainMissing names the package."""
    if platform == host:
        include = sysconfig.get_paths()["include"]
        if not (Path(include) / "Python.h").is_file():
            raise ToolchainMissing(
                f"Python.h missing in {include}: apt-get install -y python{host_version()}-dev"
            )
        dirs = (include,)
        return TargetPython(host_version(), sysconfig.get_config_var("SOABI"), dirs, headers_digest(dirs))
    target = platforms.parse(platform)
    dirs = debian_headers(host_version(), target.triplet)
    if dirs is None:
        raise ToolchainMissing(
            f"Python headers for {platform} missing (/usr/include/{target.triplet}/python{host_version()}"
            f"/pyconfig.h): dpkg --add-architecture {target.arch} && apt-get update && "
            f"apt-get install -y {target.python_headers_package(host_version())}"
        )
    soabi = f"{sys.implementation.cache_tag}-{target.triplet}"
    return TargetPython(
        host_version(), soabi, dirs, headers_digest(dirs), f"the host's {target.arch} headers"
    )


def debian_headers(version: str, triplet: str, root: Path = Path("/")) -> tuple[str, ...] | None:
    """Debian's multiarch headers of CPython `version` for `triplet` (`libpython3.X-dev:<arch>`),
    or None when they are not installed. The generic `pyconfig.h` includes the triplet's one."""
    generic = root / "usr" / "include" / f"python{version}"
    specific = root / "usr" / "include" / triplet / f"python{version}"
    if (generic / "Python.h").is_file() and (specific / "pyconfig.h").is_file():
        return (str(generic), str(specific))
    return None


def interpreter_headers(version: str) -> tuple[str, ...] | None:
    """The running interpreter's own headers, when it is CPython `version` (the host platform)."""
    include = Path(sysconfig.get_paths()["include"])
    if version == host_version() and (include / "Python.h").is_file():
        return (str(include),)
    return None


def check_cython_supports(version: str) -> str | None:
    """None when the installed Cython compiles for CPython `version`; a warning for a version newer
    than Kiln knows; ValueError for one it cannot compile for."""
    wanted = tuple(int(part) for part in version.split("."))
    installed = tuple(int(part) for part in re.findall(r"\d+", Cython.__version__)[:3])
    if wanted < OLDEST_TARGET:
        oldest = ".".join(map(str, OLDEST_TARGET))
        raise ValueError(
            f"CPython {version} is older than {oldest}, the oldest Cython {Cython.__version__} compiles for"
        )
    known = [python for python in _CYTHON_FOR_PYTHON if python <= wanted]
    needed = _CYTHON_FOR_PYTHON[max(known)]
    if installed < needed:
        raise ValueError(
            f"CPython {version} needs Cython {'.'.join(map(str, needed))} or later; the compiler has "
            f"{Cython.__version__} (upgrade Cython in the compiler's environment)"
        )
    if wanted > max(_CYTHON_FOR_PYTHON):
        newest = ".".join(map(str, max(_CYTHON_FOR_PYTHON)))
        return f"CPython {version} is newer than {newest}, the newest Kiln knows Cython's support of"
    return None
