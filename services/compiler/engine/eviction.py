"""Keeping the compile cache within its bound: least-recently-used eviction that never removes an
entry a running build relies on.

How builds and eviction stay out of each other's way (several workers may share one cache):

- a build holds a *lease* for its whole run: a file in state/leases/ that the build keeps
  flock'ed (the kernel drops the lock if the process dies, so a crashed build's lease is
  recognised as stale and removed);
- a build takes the *lookup lock* shared while it decides which entries it will use, and stamps
  each one it uses (ModuleCache.use); eviction takes it exclusive while it chooses and deletes;
- eviction only removes entries last used before the oldest running build started.

So every entry a running build relies on was stamped (or written) after that build started and
is kept; an entry evicted before a build's lookup is simply a miss for that build. Output trees
hold hard links, so evicting an entry never breaks an output that already uses it.

Size is tracked cheaply: builds add what they stored to state/size (one locked update per
build); when that passes the bound, a prune scans the cache, rewrites the exact size and evicts
the least recently used entries down to LOW_WATER of the bound (so the next builds do not prune
again at once). ccache keeps its own directory within its share (ModuleCache.ccache_max_bytes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cache import ENTRY_KINDS, TEMP_PREFIX, ModuleCache
from .cc import ccache_size, find_ccache

log = logging.getLogger(__name__)

LOW_WATER = 0.9
# File times come from the kernel's coarse clock, stamps from time.time_ns(): allow for the gap.
CLOCK_SLACK_NS = 2 * 10**9
_NEW_LEASE_PREFIX = ".new-"
LAST_PRUNE_NAME = "last-prune.json"


@dataclass(frozen=True)
class RunningBuild:
    pid: int
    started_ns: int


@dataclass
class EvictionReport:
    """What one eviction pass of the module cache did (not a registry prune: shared.registry's
    PruneReport is that)."""

    evicted: int = 0
    evicted_bytes: int = 0
    kept_bytes: int = 0  # entries left after the prune
    in_use_bytes: int = 0  # over the bound but used since the oldest running build started: kept
    garbage_removed: int = 0  # temporary files and leases left by crashed builds
    running_builds: int = 0
    bound_bytes: int = 0  # the bound for entries (ModuleCache.max_bytes 0 = unbounded)
    ccache: str = ""  # what ccache's cleanup said, if it ran
    finished: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class KindUsage:
    entries: int
    bytes: int


@dataclass
class CacheStats:
    root: str
    max_bytes: int
    entries_max_bytes: int
    ccache_max_bytes: int
    kinds: dict[str, KindUsage]
    ccache_bytes: int
    temporary_files: int
    oldest_use: float | None
    newest_use: float | None
    running_builds: list[RunningBuild]
    last_prune: dict | None

    @property
    def entry_bytes(self) -> int:
        return sum(kind.bytes for kind in self.kinds.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "entry_bytes": self.entry_bytes}


@dataclass(frozen=True)
class _Entry:
    path: Path
    size: int
    last_use_ns: int
    temporary: bool


@contextlib.contextmanager
def build_lease(cache: ModuleCache) -> Iterator[None]:
    """Register a running build for its duration (see the module doc)."""
    leases = _leases_dir(cache)
    leases.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=leases, prefix=_NEW_LEASE_PREFIX)
    fcntl.flock(handle, fcntl.LOCK_EX)
    # Locked before it gets its final name: a pruner never sees an unlocked live lease.
    lease = leases / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    # The start in this host's clock, the clock of every stamp this build sets (ModuleCache.use,
    # .store): a file time could come from another clock (a file server's).
    os.write(handle, f"{os.getpid()}\n{time.time_ns()}\n".encode())
    os.rename(temporary, lease)
    try:
        yield
    finally:
        lease.unlink(missing_ok=True)
        os.close(handle)


@contextlib.contextmanager
def lookup_lock(cache: ModuleCache, *, exclusive: bool = False) -> Iterator[None]:
    cache.state_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(cache.state_dir / "lookup.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def running_builds(cache: ModuleCache, *, remove_stale: bool = True) -> list[RunningBuild]:
    """Builds holding a lease now; leases whose owner died are removed on the way."""
    return _check_leases(cache, remove_stale)[0]


def _check_leases(cache: ModuleCache, remove_stale: bool) -> tuple[list[RunningBuild], int]:
    found: list[RunningBuild] = []
    stale = 0
    leases = _leases_dir(cache)
    if not leases.is_dir():
        return found, stale
    for path in leases.iterdir():
        if path.name.startswith(_NEW_LEASE_PREFIX):
            continue  # not locked yet maybe; its build has not looked anything up yet
        try:
            handle = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its build just ended
        try:
            started = _lease_start_ns(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                found.append(RunningBuild(_lease_pid(path), started))
                continue
            # Nobody holds it: its build is gone (a lease still being created is held already,
            # unless its process died before locking it).
            if remove_stale:
                path.unlink(missing_ok=True)
                stale += 1
        finally:
            os.close(handle)
    return found, stale


def note_growth(cache: ModuleCache, added_bytes: int) -> int | None:
    """Add what a build stored to the recorded size; the new total, or None if unknown."""
    cache.state_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(_size_file(cache), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = os.read(handle, 64).decode().strip()
        if not text.isdigit():
            return None  # never measured (a new or pre-existing cache): a prune measures it
        total = int(text) + added_bytes
        os.lseek(handle, 0, os.SEEK_SET)
        os.ftruncate(handle, 0)
        os.write(handle, str(total).encode())
        return total
    finally:
        os.close(handle)


def prune_if_over(cache: ModuleCache, added_bytes: int) -> EvictionReport | None:
    """After a build stored `added_bytes`: prune if the cache is (or may be) over its bound."""
    if not cache.max_bytes or added_bytes <= 0:
        return None
    total = note_growth(cache, added_bytes)
    bound = cache.entries_max_bytes(find_ccache() is not None)
    if total is not None and total <= bound:
        return None
    report = prune(cache)
    if report.evicted or report.in_use_bytes:
        log.info(
            "compile cache %s: evicted %d entries (%d MiB); %d MiB kept, bound %d MiB",
            cache.root,
            report.evicted,
            report.evicted_bytes // 2**20,
            report.kept_bytes // 2**20,
            report.bound_bytes // 2**20,
        )
    return report


def prune(cache: ModuleCache, *, everything: bool = False) -> EvictionReport:
    """Evict least recently used entries until the cache is within its bound (to LOW_WATER of
    it), or every entry with `everything`; entries running builds rely on are always kept."""
    ccache = find_ccache()
    bound = 0 if everything else cache.entries_max_bytes(ccache is not None)
    report = EvictionReport(bound_bytes=bound)
    entries = _scan(cache)  # outside the lock: builds keep going while we read the directory
    total = sum(e.size for e in entries if not e.temporary)
    over = everything or (cache.max_bytes > 0 and total > bound)
    target = 0 if everything else int(bound * LOW_WATER)
    with lookup_lock(cache, exclusive=True):
        builds, report.garbage_removed = _check_leases(cache, remove_stale=True)
        report.running_builds = len(builds)
        cutoff = min([time.time_ns(), *(b.started_ns for b in builds)]) - CLOCK_SLACK_NS
        remaining = total
        for entry in sorted(entries, key=lambda e: e.last_use_ns):
            if not entry.temporary and (not over or remaining <= target):
                continue
            try:
                last_use = _last_use_ns(os.stat(entry.path))
            except FileNotFoundError:
                remaining -= 0 if entry.temporary else entry.size
                continue
            if last_use >= cutoff:  # used since the scan, or by a running build
                report.in_use_bytes += 0 if entry.temporary else entry.size
                continue
            entry.path.unlink(missing_ok=True)
            if entry.temporary:
                report.garbage_removed += 1
            else:
                report.evicted += 1
                report.evicted_bytes += entry.size
                remaining -= entry.size
        report.kept_bytes = remaining
        _write_size(cache, remaining)
    report.garbage_removed += _remove_abandoned_new_leases(cache)
    if ccache and cache.ccache_dir.is_dir():
        report.ccache = _ccache_cleanup(cache, ccache, clear=everything)
    _write_last_prune(cache, report)
    return report


def stats(cache: ModuleCache) -> CacheStats:
    ccache = find_ccache() is not None
    entries = _scan(cache)
    kinds = {}
    for kind in ENTRY_KINDS:
        mine = [e for e in entries if not e.temporary and e.path.parent.parent.name == kind]
        kinds[kind] = KindUsage(len(mine), sum(e.size for e in mine))
    uses = [e.last_use_ns for e in entries if not e.temporary]
    try:
        last_prune = json.loads((cache.state_dir / LAST_PRUNE_NAME).read_text())
    except (OSError, ValueError):
        last_prune = None
    return CacheStats(
        root=str(cache.root),
        max_bytes=cache.max_bytes,
        entries_max_bytes=cache.entries_max_bytes(ccache),
        ccache_max_bytes=cache.ccache_max_bytes(ccache),
        kinds=kinds,
        ccache_bytes=_tree_bytes(cache.ccache_dir),
        temporary_files=sum(e.temporary for e in entries),
        oldest_use=min(uses) / 1e9 if uses else None,
        newest_use=max(uses) / 1e9 if uses else None,
        running_builds=running_builds(cache, remove_stale=False),
        last_prune=last_prune,
    )


def _scan(cache: ModuleCache) -> list[_Entry]:
    found: list[_Entry] = []
    for kind in ENTRY_KINDS:
        for shard in _subdirs(cache.root / kind):
            with contextlib.suppress(FileNotFoundError), os.scandir(shard) as files:
                for item in files:
                    with contextlib.suppress(FileNotFoundError):
                        info = item.stat(follow_symlinks=False)
                        temporary = item.name.startswith(TEMP_PREFIX)
                        found.append(_Entry(Path(item.path), info.st_size, _last_use_ns(info), temporary))
    return found


def _subdirs(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as items:
            return [item.path for item in items if item.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _last_use_ns(info: os.stat_result) -> int:
    # atime is the use stamp; mtime (when written) counts too where a file system drops atimes.
    return max(info.st_atime_ns, info.st_mtime_ns)


def _tree_bytes(directory: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
    return total


def _ccache_cleanup(cache: ModuleCache, ccache: str, *, clear: bool) -> str:
    env = {
        **os.environ,
        "CCACHE_DIR": str(cache.ccache_dir),
        "CCACHE_MAXSIZE": ccache_size(cache.ccache_max_bytes()),
        "LC_ALL": "C",
    }
    command = [ccache, "--clear" if clear else "--cleanup"]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as problem:
        return f"ccache cleanup failed: {problem}"
    message = (done.stdout + done.stderr).strip()
    return message if done.returncode == 0 else f"ccache exited {done.returncode}: {message}"


def _remove_abandoned_new_leases(cache: ModuleCache) -> int:
    """A `.new-` lease whose process died between creating and locking it."""
    removed = 0
    leases = _leases_dir(cache)
    if not leases.is_dir():
        return 0
    for path in leases.glob(f"{_NEW_LEASE_PREFIX}*"):
        try:
            if time.time() - path.stat().st_mtime < 60:
                continue  # being created right now
            handle = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
            removed += 1
        except BlockingIOError:
            pass
        finally:
            os.close(handle)
    return removed


def _write_size(cache: ModuleCache, total: int) -> None:
    handle = os.open(_size_file(cache), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.ftruncate(handle, 0)
        os.write(handle, str(max(0, total)).encode())
    finally:
        os.close(handle)


def _write_last_prune(cache: ModuleCache, report: EvictionReport) -> None:
    path = cache.state_dir / LAST_PRUNE_NAME
    partial = path.with_name(f"{LAST_PRUNE_NAME}.{os.getpid()}.partial")
    partial.write_text(json.dumps(report.to_dict(), indent=1))
    partial.replace(path)


def _leases_dir(cache: ModuleCache) -> Path:
    return cache.state_dir / "leases"


def _size_file(cache: ModuleCache) -> Path:
    return cache.state_dir / "size"


def _lease_start_ns(handle: int) -> int:
    try:
        return int(os.pread(handle, 64, 0).split()[1])
    except (IndexError, ValueError):
        return os.fstat(handle).st_mtime_ns


def _lease_pid(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[0])
    except ValueError:
        return 0
