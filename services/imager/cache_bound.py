"""The imager's warm caches (tier venvs, pulled artifacts) kept under a size bound, least recently
used first out.

The caches are the imager's speed (a warm rebuild prepares no venv and pulls no artifact), so
clean-up keeps them; KILN_IMAGER_CACHE_MAX_BYTES bounds them. Each entry is one finished directory
(`tiers/<tier>-<arch>-<hash>`, `artifacts/<digest>`), immutable once renamed into place; its mtime
is its last use (`lease` touches it).

A job holds a shared flock on each entry while it reads it into the build context (`lease`);
eviction takes the exclusive lock without waiting and skips entries it cannot take, so a worker
never deletes what another worker on this host is reading. An evicted entry is renamed away
first, then deleted: a reader sees a whole entry or none.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("kiln.imager.cleanup")

# Temporary siblings (`.tier-…` while pip runs, `.evict-…` while deleting) older than this are
# leftovers of a dead process: pip's own timeout is 900 s.
STALE_TEMP_S = 3600
UNBOUNDED = 2**63  # KILN_IMAGER_CACHE_MAX_BYTES=0, as the compiler's: no bound


@dataclass(frozen=True)
class Eviction:
    evicted: tuple[str, ...]
    freed_bytes: int
    kept_bytes: int


class BoundedCache:
    def __init__(self, roots: list[Path], max_bytes: int):
        self.roots = roots
        self.max_bytes = max_bytes
        self._sizes: dict[tuple[str, int], int] = {}

    @contextlib.contextmanager
    def lease(self, entry: Path) -> Iterator[bool]:
        """Hold `entry` against eviction while it is read; yields False if it vanished (evicted
        between the caller's check and now): the caller prepares it again."""
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                still_there = os.path.samestat(os.fstat(fd), os.stat(entry, follow_symlinks=False))
            except OSError:
                still_there = False
            if still_there:
                os.utime(entry)  # its last use: what LRU orders by
            yield still_there
        finally:
            os.close(fd)

    def entries(self) -> list[Path]:
        found = []
        for root in self.roots:
            if root.is_dir():
                found += [p for p in root.iterdir() if not p.name.startswith(".") and _is_real_dir(p)]
        return found

    def total_bytes(self) -> int:
        return sum(self._size(entry) for entry in self.entries())

    def evict(self) -> Eviction:
        """Delete least recently used entries until the caches fit the bound."""
        entries = sorted(self.entries(), key=_last_used)
        total = sum(self._size(entry) for entry in entries)
        evicted, freed = [], 0
        for entry in entries:
            if total <= self.max_bytes:
                break
            size = self._size(entry)
            if _remove_unleased(entry):
                evicted.append(entry.name)
                freed += size
                total -= size
        if evicted:
            log.info("cache over %.0f MB: evicted %s (%.1f MB)", self.max_bytes / 1e6, evicted, freed / 1e6)
        return Eviction(tuple(evicted), freed, total)

    def remove_stale_temps(self, now: float | None = None) -> list[str]:
        """Dot-prefixed temp dirs of a process that died while preparing or evicting."""
        now = time.time() if now is None else now
        removed = []
        for root in self.roots:
            if not root.is_dir():
                continue
            for path in root.iterdir():
                if path.name.startswith(".") and _is_real_dir(path) and now - _last_used(path) > STALE_TEMP_S:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        return removed

    def _size(self, entry: Path) -> int:
        try:
            key = (str(entry), entry.lstat().st_ino)
        except OSError:
            return 0
        if key not in self._sizes:  # entries are immutable: measure once per inode
            self._sizes[key] = _tree_bytes(entry)
        return self._sizes[key]


class CacheEntryEvicted(RuntimeError):
    """An entry kept being evicted between being prepared and being held (a bound far too small)."""


@contextlib.contextmanager
def held_entry(cache: BoundedCache | None, prepare: Callable[[], Path | None]) -> Iterator[Path | None]:
    """A cache entry, held against eviction (by any worker on this host) while it is read into
    the build context; prepared again if it was evicted between being found and being held.
    `prepare` may return None (nothing to hold); without a cache nothing is held."""
    for _attempt in range(3):
        path = prepare()
        if path is None or cache is None:
            yield path
            return
        with cache.lease(path) as present:
            if present:
                yield path
                return
    raise CacheEntryEvicted(f"the cache entry {path.name} was evicted three times while being used")


def _remove_unleased(entry: Path) -> bool:
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False  # a job is reading it right now
    try:
        doomed = entry.with_name(f".evict-{entry.name}-{os.getpid()}")
        entry.rename(doomed)
    except OSError:
        os.close(fd)
        return False
    os.close(fd)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _last_used(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _tree_bytes(root: Path) -> int:
    """Bytes on disk (allocated blocks), links counted as links, never followed."""
    total = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as scan:
                for item in scan:
                    stat = item.stat(follow_symlinks=False)
                    total += stat.st_blocks * 512
                    if item.is_dir(follow_symlinks=False):
                        stack.append(Path(item.path))
        except OSError:
            continue
    return total
