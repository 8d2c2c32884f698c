"""What was read from an image, cached per manifest digest (a digest's content never changes):
`<root>/<hex>/entry.json` plus the exported headers. The only network a warm compile spends is
the tag's resolution to that digest.

Bounded by entry count (KILN_COMPILER_PYTHON_CACHE_ENTRIES; an entry is a few hundred KB of
headers), least recently used first out, the way the imager bounds its caches: a compile holds a
shared flock on each entry it compiles against (`held`), eviction takes the exclusive lock
without waiting and skips what it cannot take, renames the entry away, then deletes it. So gcc
never loses a header mid-compile, and a reader sees a whole entry or none.

Not inside the compile cache on purpose: that one is writable from the compile sandbox, and these
headers go into every later compile of every package.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("kiln.compiler")

ENTRY_FILE = "entry.json"
DEFAULT_MAX_ENTRIES = 32
STALE_TEMP_S = 3600  # a `.fill-` or `.evict-` directory this old belongs to a dead process


class ImageStore:
    def __init__(self, root: Path, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.root = Path(root)
        self.max_entries = max_entries

    def entry_dir(self, digest: str) -> Path:
        return self.root / digest.removeprefix("sha256:")

    @contextlib.contextmanager
    def held(self, digest: str, fill: Callable[[Path], dict]) -> Iterator[tuple[Path, dict]]:
        """(entry directory, entry.json) for `digest`, read with `fill(directory)` on a miss
        (fill writes its files there and returns what entry.json holds), kept from eviction
        until the context ends. entry.json's `cached` says whether this call found it."""
        for _attempt in range(3):
            entry = self.entry_dir(digest)
            cached = (entry / ENTRY_FILE).is_file()
            if not cached:
                self._fill(entry, fill)
            with _lease(entry) as present:
                if present:
                    described = json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))
                    yield entry, {**described, "cached": cached}
                    return
        raise RuntimeError(f"the cache entry {entry} was evicted three times while being read")

    def _fill(self, entry: Path, fill: Callable[[Path], dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".fill-{entry.name[:16]}-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            described = fill(work)
            (work / ENTRY_FILE).write_text(json.dumps(described, indent=2, sort_keys=True), encoding="utf-8")
            try:
                work.rename(entry)  # atomic: concurrent compiles see a whole entry or none
            except OSError:
                if not (entry / ENTRY_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.evict()

    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir()]

    def evict(self) -> list[str]:
        """Least recently used entries out until at most max_entries are left (0 = unbounded)."""
        self._remove_stale_temps()
        entries = sorted(self.entries(), key=_last_used)
        evicted = []
        while self.max_entries and len(entries) - len(evicted) > self.max_entries and entries:
            candidate = entries.pop(0)
            if _remove_unleased(candidate):
                evicted.append(candidate.name)
        if evicted:
            log.info("base image cache %s over %d entries: evicted %s", self.root, self.max_entries, evicted)
        return evicted

    def _remove_stale_temps(self) -> None:
        now = time.time()
        for path in self.root.glob(".*"):
            if path.is_dir() and now - _last_used(path) > STALE_TEMP_S:
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _lease(entry: Path) -> Iterator[bool]:
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
            os.utime(entry)  # its last use: what eviction orders by
        yield still_there
    finally:
        os.close(fd)


def _remove_unleased(entry: Path) -> bool:
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        doomed = entry.with_name(f".evict-{entry.name[:16]}-{uuid.uuid4().hex[:8]}")
        entry.rename(doomed)
    except OSError:  # BlockingIOError: a compile holds it right now
        return False
    finally:
        os.close(fd)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def _last_used(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0
