"""Content-addressed module cache shared by every build on a machine.

Two kinds of entries: the generated C (key: source + module name + Cython version + directives,
platform-free, so the .py->.c step runs once for all platforms) and the extension (key: the C key +
toolchain fingerprint + ABI suffix). Writes go to a temporary file in the same directory and are
published with os.replace, so concurrent builds sharing the directory never see a partial entry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def default_cache_dir() -> Path:
    # The one place the engine reads the environment: the XDG base-directory convention.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kiln" / "compile"


def digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))  # length prefix: no ambiguous concatenation
        hasher.update(data)
    return hasher.hexdigest()


class ModuleCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()

    @property
    def ccache_dir(self) -> Path:
        return self.root / "ccache"

    def c_path(self, key: str) -> Path:
        return self.root / "c" / key[:2] / f"{key}.c"

    def extension_path(self, key: str) -> Path:
        return self.root / "so" / key[:2] / f"{key}.so"

    def has(self, path: Path) -> bool:
        return path.is_file()

    def store(self, source: Path, destination: Path) -> Path:
        """Copy `source` into the cache entry `destination` atomically; return the entry."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".tmp-")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.chmod(temporary, 0o644)
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return destination


def place(entry: Path, target: Path) -> None:
    """Put a cache entry into an output tree: hard link when possible (no-change builds are
    only hashing and linking), copy across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(entry, target)
    except OSError:
        shutil.copyfile(entry, target)
