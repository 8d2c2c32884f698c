"""Content-addressed module cache shared by every build on a machine.

Two kinds of entries: the generated C (key: source + module name + Cython version + directives,
platform-free, so the .py->.c step runs once for all platforms) and the extension (key: the C key +
toolchain fingerprint + ABI suffix). Writes go to a temporary file in the same directory and are
published with os.replace, so concurrent builds sharing the directory never see a partial entry.

Every hit stamps the entry's access time (one utime, ~2 µs): the last-use order that eviction
(eviction.py) follows. The modification time stays the time the entry was written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

DEFAULT_MAX_BYTES = 5 * 1024**3
# ccache's own directory gets this share of the bound (ccache evicts by itself, within its max_size).
# Small: our .so key already covers the C text, so ccache rarely hits where we missed.
CCACHE_SHARE = 0.1
TEMP_PREFIX = ".tmp-"
ENTRY_KINDS = ("c", "so")


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
    """The cache directory and its size bound (`max_bytes`; 0 = unbounded).

    Layout: c/<k>/<key>.c, so/<k>/<key>.so, ccache/, state/ (leases, locks, size; eviction.py).
    Picklable: compile jobs in worker processes get the same object.
    """

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache max_bytes must be 0 (unbounded) or positive, not {max_bytes}")
        self.root = Path(root) if root else default_cache_dir()
        self.max_bytes = int(max_bytes)

    @property
    def ccache_dir(self) -> Path:
        return self.root / "ccache"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def ccache_max_bytes(self, ccache_present: bool = True) -> int:
        """ccache's max_size (0 = unbounded, as in ccache)."""
        if not self.max_bytes or not ccache_present:
            return 0
        return max(1, int(self.max_bytes * CCACHE_SHARE))

    def entries_max_bytes(self, ccache_present: bool) -> int:
        """The bound for our own entries: what ccache does not get (unused when max_bytes is 0)."""
        return max(0, self.max_bytes - self.ccache_max_bytes(ccache_present))

    def c_path(self, key: str) -> Path:
        return self.root / "c" / key[:2] / f"{key}.c"

    def extension_path(self, key: str) -> Path:
        return self.root / "so" / key[:2] / f"{key}.so"

    def has(self, path: Path) -> bool:
        return path.is_file()

    def use(self, path: Path) -> bool:
        """A lookup that counts as a use: True and the entry's access time set to now, or False.

        The stamp is explicit (os.utime), so it works on noatime/relatime mounts; an entry
        evicted meanwhile is simply a miss."""
        try:
            mtime = os.stat(path).st_mtime_ns
            os.utime(path, ns=(time.time_ns(), mtime))
        except FileNotFoundError:
            return False
        return True

    def store(self, source: Path, destination: Path) -> int:
        """Copy `source` into the cache entry `destination` atomically; return its size in bytes."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=TEMP_PREFIX)
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.chmod(temporary, 0o644)
            now = time.time_ns()  # the clock of use() and of build leases, not the file system's
            os.utime(temporary, ns=(now, now))
            size = os.stat(temporary).st_size
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return size


def place(entry: Path, target: Path) -> None:
    """Put a cache entry into an output tree: hard link when possible (no-change builds are
    only hashing and linking), copy across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(entry, target)
    except OSError:
        shutil.copyfile(entry, target)
