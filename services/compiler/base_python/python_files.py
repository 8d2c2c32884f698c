"""What an image's files say about its Python: which CPython `python3` is (the command every
Kiln image runs: the launcher is `python3 …`), its ABI from `_sysconfigdata*.py`, and where its
headers are, if it ships them.

Layouts seen: Debian's python3 (`/usr/bin/python3 -> python3.11`, `/usr/lib/python3.11/
_sysconfigdata__x86_64-linux-gnu.py`, headers only with `libpython3.11-dev`: the generic
`/usr/include/python3.11/pyconfig.h` includes `/usr/include/<triplet>/python3.11/pyconfig.h`) and
the official python images (`/usr/local/bin/python3 -> python3.13`, everything under /usr/local,
headers included). The image's files are data: `_sysconfigdata` is parsed as a literal, never run.
"""

from __future__ import annotations

import ast
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from .layers import ImageFiles, Keep, normalize

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's default
_VERSION = r"3\.\d{1,2}"
_INTERPRETER = re.compile(r"^python3(?:\.\d{1,2})?t?$")
_VERSIONED = re.compile(rf"^python(?P<version>{_VERSION})(?P<flags>t?)$")
_SYSCONFIGDATA = re.compile(rf"(?:^|/)lib/python(?P<version>{_VERSION})t?/_sysconfigdata_[^/]*\.py$")
_HEADER = re.compile(rf"(?:^|/)include/(?:[^/]+/)?python{_VERSION}t?/.+\.h$")
_PYTHON_H = re.compile(rf"(?:^|/)include/(?P<dir>python{_VERSION}t?)/Python\.h$")
MAX_SYSCONFIG_BYTES = 1 << 20


class NoPython(ValueError):
    """The image has no python3 Kiln's images could run."""


def want(path: str) -> Keep:
    """What ImageFiles keeps of each layer entry: interpreters (presence), the ABI and headers."""
    if _SYSCONFIGDATA.search(path) or _HEADER.search(path):
        return Keep.CONTENT
    if _INTERPRETER.fullmatch(posixpath.basename(path)):
        return Keep.PRESENCE
    return Keep.SKIP


@dataclass(frozen=True)
class FoundPython:
    version: str  # "3.13"
    soabi: str  # "cpython-313-aarch64-linux-gnu"
    interpreter: str  # in the image: "usr/local/bin/python3.13"
    include_dir: str | None  # INCLUDEPY, in the image: "usr/local/include/python3.13"


def find_python(files: ImageFiles, path_env: str | None, triplet: str) -> FoundPython:
    """The CPython `python3` runs in this image; NoPython / ValueError say what is missing."""
    searched = [d for d in (path_env or DEFAULT_PATH).split(":") if d.startswith("/")]
    interpreter = next(
        (found for d in searched if (found := files.resolve(f"{d}/python3")) and files.is_file(found)), None
    )
    if interpreter is None:
        raise NoPython(f"no python3 on its PATH ({':'.join(searched)})")
    prefix = posixpath.dirname(posixpath.dirname(interpreter))  # usr/local/bin/python3.13 -> usr/local
    candidates = files.names(lambda p: bool(_SYSCONFIGDATA.search(p)) and p.startswith(f"{prefix}/lib/"))
    named = _VERSIONED.fullmatch(posixpath.basename(interpreter))
    if named:
        version = named["version"]
    else:  # a plain `python3` file: the one version whose standard library is beside it
        versions = {_SYSCONFIGDATA.search(p)["version"] for p in candidates}  # type: ignore[index]
        if len(versions) != 1:
            raise NoPython(
                f"/{interpreter} names no version and /{prefix}/lib holds {sorted(versions) or 'none'}"
            )
        version = versions.pop()
    ours = [p for p in candidates if _SYSCONFIGDATA.search(p)["version"] == version]  # type: ignore[index]
    variables = _sysconfig_vars(files, _pick(ours, triplet))
    soabi = variables.get("SOABI") or f"cpython-{version.replace('.', '')}-{triplet}"
    if variables.get("VERSION", version) != version:
        raise ValueError(
            f"/{interpreter} is Python {version} but its _sysconfigdata says {variables['VERSION']}"
        )
    if not soabi.endswith(f"-{triplet}"):
        raise ValueError(f"its Python {version} is built for {soabi.rsplit('-', 3)[-3]}, not {triplet}")
    include = variables.get("INCLUDEPY") or f"/{prefix}/include/python{version}"
    return FoundPython(version, soabi, interpreter, normalize(include))


def _pick(sysconfigdata: list[str], triplet: str) -> str | None:
    """`_sysconfigdata__linux_<triplet>.py` (the name CPython imports), else one naming the triplet."""
    for wanted in (f"_linux_{triplet}.py", triplet):
        found = [p for p in sysconfigdata if wanted in posixpath.basename(p)]
        if found:
            return found[0]
    return sysconfigdata[0] if sysconfigdata else None


def _sysconfig_vars(files: ImageFiles, path: str | None) -> dict:
    """`build_time_vars` of a _sysconfigdata file, as a literal; {} when the image has none."""
    data = files.read(path) if path else None
    if data is None or len(data) > MAX_SYSCONFIG_BYTES:
        return {}
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "build_time_vars" for t in node.targets
        ):
            try:
                found = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}
    return {}


@dataclass(frozen=True)
class FoundHeaders:
    directory: str  # "python3.13" (or "python3.13t"): what the headers are for
    include_dir: str  # in the image: where Python.h is
    pyconfig: str  # in the image: this platform's pyconfig.h (Debian's multiarch one if split)


def find_headers(files: ImageFiles, triplet: str) -> list[FoundHeaders]:
    """Every complete set of CPython headers in the image for `triplet`: Python.h plus a
    pyconfig.h that is this platform's (not only Debian's generic one, which just includes it)."""
    found = []
    for python_h in files.names(lambda p: bool(_PYTHON_H.search(p))):
        include_dir = posixpath.dirname(python_h)
        directory = posixpath.basename(include_dir)
        root = include_dir[: -len(directory)].rstrip("/")  # usr/include
        multiarch = f"{root}/{triplet}/{directory}/pyconfig.h"
        for pyconfig in (multiarch, f"{include_dir}/pyconfig.h"):
            text = files.read(pyconfig)
            if text is not None and b"/pyconfig.h>" not in text:  # not the generic dispatcher
                found.append(FoundHeaders(directory, include_dir, pyconfig))
                break
    return found


def export_headers(files: ImageFiles, headers: FoundHeaders, destination: Path) -> Path:
    """The headers as one directory gcc takes with a single -I: the platform's pyconfig.h
    replaces Debian's generic one (which would only include it)."""
    target = destination / headers.directory
    for relative in files.files_under(headers.include_dir):
        blob = files.blob(f"{headers.include_dir}/{relative}")
        if blob is not None:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_bytes(blob.read_bytes())
    (target / "pyconfig.h").write_bytes(files.read(headers.pyconfig) or b"")
    return target


def free_threaded(pyconfig: bytes) -> bool:
    """Headers of a free-threaded CPython (ABI `t`) define Py_GIL_DISABLED."""
    return re.search(rb"^\s*#\s*define\s+Py_GIL_DISABLED\s+1", pyconfig, re.M) is not None
