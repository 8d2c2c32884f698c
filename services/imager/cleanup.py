"""Image workers clean up after themselves (issue #14): after every job, and at start-up what a
dead predecessor left.

After a job (pushed, failed or cancelled): the job's local tags go, with their untagged parents,
and so do the build-step images nothing else builds on; the pushed image stays only while it is
among the newest KILN_IMAGER_KEEP_PUSHED of its repository (a deployer on the same engine creates
its containers from the local image); the job's scratch dir is gone already; the warm caches are
cut to KILN_IMAGER_CACHE_MAX_BYTES, least recently used first.

At start-up: every worker whose lock nobody holds (services/imager/worker_ledger.py) is dead; what
its ledger names is removed, with its proof containers and scratch dirs. Proof containers of
workers this work dir does not know (another host's work dir on a shared engine, or a worker from
before proof names) are removed only once older than any proof can last.

A failure here is logged and never fails a job or stops the worker: the image is pushed already,
and the next clean-up tries again.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.imager.cache_bound import STALE_TEMP_S, BoundedCache
from services.imager.ports import EngineCleaner
from services.imager.worker_ledger import WORKER_ID, DeadWorker, JobRecord, WorkerLedger
from shared.bus.live_logs import LineSink

log = logging.getLogger("kiln.imager.cleanup")

# " ---> 1a2b3c4d5e6f" (Docker's classic builder), "--> 1a2b3c4d5e6" (buildah --layers)
_STEP_ID = re.compile(r"^\s*-{2,3}> (?:Using cache\s*)?([0-9a-f]{11,64})\s*$")


@dataclass
class CleanupPolicy:
    keep_pushed: int = 1  # newest pushed images per repository left in the engine
    # A proof lasts at most its timeout x the QEMU factor; a proof container older than this
    # whose owner we cannot ask is a leftover.
    stale_proof_s: float = 900.0


class Janitor:
    def __init__(
        self,
        engine: EngineCleaner,
        ledger: WorkerLedger,
        cache: BoundedCache,
        work_dir: Path,
        policy: CleanupPolicy | None = None,
    ):
        self.engine = engine
        self.ledger = ledger
        self.cache = cache
        self.jobs_dir = work_dir / "jobs"
        self.policy = policy or CleanupPolicy()
        # A worker may run several jobs at once (KILN_IMAGER_CONCURRENCY). A finished job's build-step
        # images may be the cache another running job's build is reading right now, so they, and
        # the cache bound, wait until no job runs; the job's own tags go at once.
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: list[JobRecord] = []

    @property
    def scratch_prefix(self) -> str:
        """Per-job scratch dirs are `jobs/<worker id>-…`: a successor knows whose they are."""
        return f"{self.ledger.worker_id}-"

    @contextlib.contextmanager
    def job(self) -> Iterator[JobTracker]:
        with self._lock:
            self._running += 1
        tracker = JobTracker(self.ledger)
        try:
            yield tracker
        finally:
            self.after_job(tracker.record)

    def after_job(self, record: JobRecord) -> None:
        try:
            self._forget_references(record)
        except Exception:
            log.warning("clean-up after the job failed (the next job tries again)", exc_info=True)
        with self._lock:
            self._running -= 1
            self._waiting.append(record)
            if self._running:
                return  # the last job to finish cleans up after every one that waited
            waiting, self._waiting = self._waiting, []
        try:
            self._forget_steps([step for record in waiting for step in record.step_ids])
        except Exception:
            log.warning("clean-up after the job failed (the next job tries again)", exc_info=True)
        try:
            self.cache.evict()
        except Exception:
            log.warning("cache eviction failed (the next job tries again)", exc_info=True)
        for done in waiting:
            self.ledger.finish_job(done)

    def at_start(self) -> None:
        """Before the first job: what dead predecessors left, stale proofs, the cache bound."""
        for step in (self._dead_predecessors, self._stale_proofs, self._stale_temps, self.cache.evict):
            try:
                step()
            except Exception:
                log.warning("start-up clean-up step %s failed", step.__name__, exc_info=True)

    def _forget_references(self, record: JobRecord) -> None:
        references = list(record.references)
        if record.pushed and record.repository and self.policy.keep_pushed > 0:
            # The newest images stay for a deployer on this engine; older ones of the repository go.
            references = self.engine.older_references(record.repository, self.policy.keep_pushed)
        self._removed(self.engine.remove_references(references))

    def _forget_steps(self, step_ids: list[str]) -> None:
        self._removed(self.engine.remove_untagged(list(dict.fromkeys(step_ids))))

    @staticmethod
    def _removed(removed: list[str]) -> None:
        if removed:
            log.info("removed from the engine: %s", ", ".join(r[:40] for r in removed))

    def _dead_predecessors(self) -> None:
        for dead in self.ledger.dead_predecessors():
            try:
                self._clean_after(dead)
            finally:
                self.ledger.forget(dead)

    def _clean_after(self, dead: DeadWorker) -> None:
        log.info("worker %s is gone: removing what it left", dead.worker_id)
        for proof in self.engine.proof_containers():
            if proof.owner == dead.worker_id:
                self.engine.remove_container(proof)
        for job in dead.jobs:
            self._forget_references(job)
        self._forget_steps([step for job in dead.jobs for step in job.step_ids])
        if self.jobs_dir.is_dir():
            for scratch in self.jobs_dir.glob(f"{dead.worker_id}-*"):
                if scratch.is_dir() and not scratch.is_symlink():
                    shutil.rmtree(scratch, ignore_errors=True)

    def _stale_proofs(self) -> None:
        for proof in self.engine.proof_containers():
            if proof.owner and self.ledger.knows(proof.owner):
                if not self.ledger.is_live_here(proof.owner):
                    self.engine.remove_container(proof)  # dead, and its lock is still here
                continue
            if proof.age_s > self.policy.stale_proof_s:
                log.info("removing stale proof container %s (%.0f s old)", proof.name, proof.age_s)
                self.engine.remove_container(proof)

    def _stale_temps(self) -> None:
        self.cache.remove_stale_temps()
        if not self.jobs_dir.is_dir():
            return
        now = time.time()
        for scratch in self.jobs_dir.iterdir():  # scratch of workers from before worker ids
            owner = scratch.name.partition("-")[0]
            old = now - scratch.lstat().st_mtime > STALE_TEMP_S
            if old and not WORKER_ID.match(owner) and scratch.is_dir() and not scratch.is_symlink():
                shutil.rmtree(scratch, ignore_errors=True)


class JobTracker:
    """What the running job puts in the engine, written to the ledger as it happens."""

    def __init__(self, ledger: WorkerLedger):
        self.ledger = ledger
        self.record = ledger.start_job()

    def tagged(self, reference: str) -> None:
        if reference not in self.record.references:
            self.record.references.append(reference)
            self.ledger.save()

    def pushed(self, repository: str) -> None:
        self.record.repository, self.record.pushed = repository, True
        self.ledger.save()

    def watching(self, sink: LineSink) -> LineSink:
        """`sink`, also noting every build-step image the builder prints."""

        def note(line: str) -> None:
            match = _STEP_ID.match(line)
            if match is not None and match.group(1) not in self.record.step_ids:
                self.record.step_ids.append(match.group(1))
                self.ledger.save()
            sink(line)

        return note


class Untracked:
    """No janitor (unit tests, CLIs): the job is not recorded and nothing is cleaned."""

    def tagged(self, reference: str) -> None:
        pass

    def pushed(self, repository: str) -> None:
        pass

    def watching(self, sink: LineSink) -> LineSink:
        return sink
