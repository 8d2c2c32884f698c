"""Who built what on this host: one lock and one ledger per live imager worker.

`<work_dir>/workers/<id>.lock` is held with an exclusive flock for the worker's whole life; the
kernel drops it when the process dies, SIGKILL included. A successor that can take a lock knows
its owner is dead and removes what the owner's ledger (`<id>.json`) names: the job's local tags,
its build-step images, its proof containers (named `kiln-proof-<id>-…`) and its scratch dirs
(`jobs/<id>-…`). A lock it cannot take belongs to a live worker, whose things are never touched.

The ledger is written by our own process, but the names in it came from a job: they are checked
again when read (a reference must be an image reference, a step an image id), so a corrupted or
planted ledger cannot name anything else to remove.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.naming import IMAGE_REFERENCE_PATTERN

log = logging.getLogger("kiln.imager.cleanup")

WORKER_ID = re.compile(r"^w[0-9a-f]{12}$")
# A proof container's name says whose it is: a name cannot come from an image, a label can (a
# container inherits its image's labels, and a pushed Dockerfile may write any LABEL).
PROOF_NAME = re.compile(r"^kiln-proof-(w[0-9a-f]{12})-[0-9a-f]{8}$")
IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{12,64}$")
_REFERENCE = re.compile(IMAGE_REFERENCE_PATTERN)


def new_worker_id() -> str:
    return "w" + secrets.token_hex(6)


def proof_container_name(worker_id: str) -> str:
    return f"kiln-proof-{worker_id}-{secrets.token_hex(4)}"


@dataclass
class JobRecord:
    """What one job left in the engine so far: written as it happens, so a kill loses nothing."""

    references: list[str] = field(default_factory=list)  # repository:tag tagged locally
    step_ids: list[str] = field(default_factory=list)  # build-step images the builder printed
    repository: str = ""
    pushed: bool = False

    @classmethod
    def checked(cls, data: dict) -> JobRecord:
        """A record read back from disk, keeping only well-formed names."""
        references = [r for r in data.get("references", []) if isinstance(r, str) and _REFERENCE.match(r)]
        steps = [s for s in data.get("step_ids", []) if isinstance(s, str) and IMAGE_ID.match(s)]
        repository = data.get("repository", "")
        return cls(
            references=references,
            step_ids=steps,
            repository=repository if isinstance(repository, str) and _REFERENCE.match(repository) else "",
            pushed=data.get("pushed") is True,
        )


@dataclass
class DeadWorker:
    worker_id: str
    jobs: list[JobRecord]
    lock_fd: int  # held until forget(): no second successor cleans the same leftovers


class WorkerLedger:
    def __init__(self, work_dir: Path, worker_id: str | None = None):
        self.root = work_dir / "workers"
        self.worker_id = worker_id or new_worker_id()
        if not WORKER_ID.match(self.worker_id):
            raise ValueError(f"worker id {self.worker_id!r} is not w + 12 hex digits")
        self._lock_fd: int | None = None
        # Every job whose leftovers are not cleaned yet: the running ones (a worker may run
        # several at once, KILN_IMAGER_CONCURRENCY) and the finished ones whose clean-up waits.
        self.jobs: list[JobRecord] = []
        self._saving = threading.Lock()

    def claim(self) -> None:
        """Take this worker's lock: from now on a successor sees it alive."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{self.worker_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd

    def release(self) -> None:
        """A clean stop: nothing is left for a successor."""
        for suffix in (".json", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{self.worker_id}{suffix}").unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def start_job(self) -> JobRecord:
        record = JobRecord()
        with self._saving:
            self.jobs.append(record)
        self.save()
        return record

    def save(self) -> None:
        if self._lock_fd is None:
            return  # not claimed (unit tests, CLIs): nothing to leave for a successor
        path = self.root / f"{self.worker_id}.json"
        with self._saving:  # jobs run in threads; one writer at a time, each write whole
            scratch = path.with_suffix(".json.tmp")
            try:
                scratch.write_text(json.dumps({"jobs": [asdict(job) for job in self.jobs]}), encoding="utf-8")
                scratch.replace(path)
            except OSError as exc:  # a full disk must not fail the job: only a successor's clean-up
                log.warning("cannot write the worker ledger %s (%s)", path, exc)

    def finish_job(self, record: JobRecord) -> None:
        """`record`'s leftovers are cleaned: it leaves the ledger."""
        with self._saving:
            self.jobs = [job for job in self.jobs if job is not record]
        self.save()

    def dead_predecessors(self) -> Iterator[DeadWorker]:
        """Workers whose lock nobody holds: dead. Each is yielded with its lock taken."""
        if not self.root.is_dir():
            return
        for lock in sorted(self.root.glob("*.lock")):
            worker_id = lock.stem
            if worker_id == self.worker_id or not WORKER_ID.match(worker_id) or lock.is_symlink():
                continue
            try:
                fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # alive
                continue
            yield DeadWorker(worker_id, self._read(worker_id), fd)

    def forget(self, dead: DeadWorker) -> None:
        for suffix in (".json", ".json.tmp", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{dead.worker_id}{suffix}").unlink()
        os.close(dead.lock_fd)

    def is_live_here(self, worker_id: str) -> bool:
        """True if `worker_id` has a lock in this work dir that someone holds (ours included)."""
        if worker_id == self.worker_id:
            return True
        lock = self.root / f"{worker_id}.lock"
        if not WORKER_ID.match(worker_id) or not lock.is_file():
            return False
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we may just have taken
        return False

    def knows(self, worker_id: str) -> bool:
        """A lock file for `worker_id` exists here (alive or not): its owner shared our work dir."""
        return WORKER_ID.match(worker_id) is not None and (self.root / f"{worker_id}.lock").is_file()

    def _read(self, worker_id: str) -> list[JobRecord]:
        """What each of a dead worker's jobs left."""
        try:
            data = json.loads((self.root / f"{worker_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(data, dict):
            return []
        jobs = data.get("jobs", [data])  # a ledger from before concurrent jobs held one record
        if not isinstance(jobs, list):
            return []
        return [JobRecord.checked(job) for job in jobs if isinstance(job, dict)]
