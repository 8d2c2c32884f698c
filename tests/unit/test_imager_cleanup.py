"""The imager's clean-up logic with a fake engine: what a job leaves is removed, the caches stay
under their bound (LRU, never an entry being read), a dead worker is told from a live one by its
lock, and names from a job or a ledger cannot steer removal outside Kiln's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.imager.cache_bound import BoundedCache
from services.imager.cleanup import CleanupPolicy, Janitor, JobTracker
from services.imager.ports import ProofContainer
from services.imager.worker_ledger import JobRecord, WorkerLedger, new_worker_id, proof_container_name

REPO = "reg:5000/kiln/v1-svc-p"


class FakeEngine:
    def __init__(self, proofs=(), older=(), fail=False):
        self.proofs = list(proofs)
        self.older = list(older)
        self.fail = fail
        self.removed_refs, self.removed_ids, self.removed_containers = [], [], []

    def remove_references(self, references):
        if self.fail:
            raise RuntimeError("engine down")
        self.removed_refs += references
        return list(references)

    def remove_untagged(self, image_ids):
        self.removed_ids += image_ids
        return list(image_ids)

    def older_references(self, repository, keep):
        return self.older

    def proof_containers(self):
        return [p for p in self.proofs if p not in self.removed_containers]

    def remove_container(self, container):
        self.removed_containers.append(container)


def entry(root: Path, name: str, size: int, used: float) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "data").write_bytes(b"x" * size)
    os.utime(path, (used, used))
    return path


def janitor(tmp_path, engine, keep=0, bound=10**9, stale=900.0) -> Janitor:
    work = tmp_path / "work"
    ledger = WorkerLedger(work)
    ledger.claim()
    cache = BoundedCache([work / "tiers", work / "artifacts"], bound)
    return Janitor(engine, ledger, cache, work, CleanupPolicy(keep_pushed=keep, stale_proof_s=stale))


def test_cache_is_cut_to_its_bound_least_recently_used_first(tmp_path):
    now = time.time()
    old = entry(tmp_path / "artifacts", "sha256-old", 40_000, now - 300)
    mid = entry(tmp_path / "tiers", "minimal-amd64-aaaa", 40_000, now - 200)
    new = entry(tmp_path / "artifacts", "sha256-new", 40_000, now - 100)
    cache = BoundedCache([tmp_path / "tiers", tmp_path / "artifacts"], 90_000)
    result = cache.evict()
    assert result.evicted == ("sha256-old",)
    assert not old.exists() and mid.exists() and new.exists()
    assert cache.total_bytes() <= 90_000


def test_lease_marks_use_and_protects_from_eviction(tmp_path):
    now = time.time()
    used = entry(tmp_path / "tiers", "t-amd64-1", 40_000, now - 500)
    other = entry(tmp_path / "tiers", "t-amd64-2", 40_000, now - 100)
    cache = BoundedCache([tmp_path / "tiers"], 10_000)
    with cache.lease(used) as present:
        assert present
        assert used.stat().st_mtime > now - 5  # its last use is now: LRU order follows
        assert cache.evict().evicted == ("t-amd64-2",)  # the leased one is being read: skipped
    assert used.exists() and not other.exists()
    assert cache.evict().evicted == ("t-amd64-1",)  # released: it may go now
    with cache.lease(used) as present:
        assert not present  # vanished: the job prepares it again


def test_cache_entries_are_real_directories_only(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"y" * 50_000)
    (tmp_path / "tiers").mkdir()
    (tmp_path / "tiers" / "linked").symlink_to(outside)
    cache = BoundedCache([tmp_path / "tiers"], 0)
    assert cache.evict().evicted == ()
    assert (outside / "keep.txt").exists()


def test_after_a_job_its_tags_and_steps_go(tmp_path):
    engine = FakeEngine()
    j = janitor(tmp_path, engine, keep=0)
    with j.job() as tracker:
        tracker.tagged(f"{REPO}:b1")
        note = tracker.watching(lambda line: None)
        for line in ("Step 1/3 : FROM base", " ---> 1a2b3c4d5e6f", " ---> Using cache", " ---> 2b3c4d5e6f7a"):
            note(line)
        tracker.tagged(f"{REPO}:latest")
        tracker.pushed(REPO)
    assert engine.removed_refs == [f"{REPO}:b1", f"{REPO}:latest"]
    assert engine.removed_ids == ["1a2b3c4d5e6f", "2b3c4d5e6f7a"]
    assert json.loads((j.ledger.root / f"{j.ledger.worker_id}.json").read_text())["jobs"] == []


def test_concurrent_jobs_steps_wait_until_no_job_runs_tags_go_at_once(tmp_path):
    """A finished job's build steps may be the cache of a build still running beside it."""
    engine = FakeEngine()
    j = janitor(tmp_path, engine, keep=0)
    with j.job() as first:
        with j.job() as second:
            second.tagged(f"{REPO}:b2")
            second.watching(lambda line: None)(" ---> 2b3c4d5e6f7a")
        assert engine.removed_refs == [f"{REPO}:b2"]  # its own tag: nobody else's
        assert engine.removed_ids == []  # the first job's build may be reading that layer
        saved = json.loads((j.ledger.root / f"{j.ledger.worker_id}.json").read_text())
        assert len(saved["jobs"]) == 2  # a kill now: the successor still cleans both
        first.tagged(f"{REPO}:b1")
        first.watching(lambda line: None)(" ---> 1a2b3c4d5e6f")
    assert engine.removed_refs == [f"{REPO}:b2", f"{REPO}:b1"]
    assert sorted(engine.removed_ids) == ["1a2b3c4d5e6f", "2b3c4d5e6f7a"]
    assert json.loads((j.ledger.root / f"{j.ledger.worker_id}.json").read_text())["jobs"] == []


def test_a_ledger_from_before_concurrent_jobs_is_still_cleaned(tmp_path):
    ledger = WorkerLedger(tmp_path)
    ledger.root.mkdir(parents=True)
    (ledger.root / f"{ledger.worker_id}.json").write_text(json.dumps({"references": [f"{REPO}:b1"]}))
    assert [job.references for job in ledger._read(ledger.worker_id)] == [[f"{REPO}:b1"]]


def test_keep_pushed_leaves_the_newest_and_removes_older_ones(tmp_path):
    engine = FakeEngine(older=[f"{REPO}:b0"])
    j = janitor(tmp_path, engine, keep=1)
    with j.job() as tracker:
        tracker.tagged(f"{REPO}:b1")
        tracker.pushed(REPO)
    assert engine.removed_refs == [f"{REPO}:b0"]
    with j.job() as tracker:  # not pushed (failed proof): its own tag goes whatever keep says
        tracker.tagged(f"{REPO}:b2")
    assert engine.removed_refs[-1] == f"{REPO}:b2"


def test_clean_up_failure_is_logged_never_raised(tmp_path, caplog):
    j = janitor(tmp_path, FakeEngine(fail=True))
    with j.job() as tracker:
        tracker.tagged(f"{REPO}:b1")
    assert "clean-up after the job failed" in caplog.text


def test_job_record_from_disk_keeps_only_wellformed_names():
    record = JobRecord.checked(
        {
            "references": [f"{REPO}:b1", "../../etc/passwd", "x; rm -rf /", "--all", "a b:c", 7],
            "step_ids": ["1a2b3c4d5e6f", "../x", "sha256:" + "a" * 64, "-f"],
            "repository": "$(reboot)",
            "pushed": "yes",
        }
    )
    assert record.references == [f"{REPO}:b1"]
    assert record.step_ids == ["1a2b3c4d5e6f", "sha256:" + "a" * 64]
    assert record.repository == "" and record.pushed is False


def _hold_lock(work: Path, worker_id: str, *, exit_at_once: bool) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from services.imager.worker_ledger import WorkerLedger\n"
        "ledger = WorkerLedger(Path(sys.argv[1]), sys.argv[2]); ledger.claim()\n"
        "ledger.start_job().references.append(sys.argv[3]); ledger.save()\n"
        "print('claimed', flush=True)\n"
        "import os; os._exit(0) if sys.argv[4] == '1' else time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(work),
            worker_id,
            f"{REPO}:{worker_id}",
            "1" if exit_at_once else "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert process.stdout.readline().strip() == "claimed"
    return process


def test_a_dead_workers_leftovers_are_removed_a_live_workers_never(tmp_path):
    work = tmp_path / "work"
    dead, alive = new_worker_id(), new_worker_id()
    _hold_lock(work, dead, exit_at_once=True).wait(timeout=10)  # exits without release(): a kill
    live = _hold_lock(work, alive, exit_at_once=False)
    try:
        (work / "jobs" / f"{dead}-abc").mkdir(parents=True)
        (work / "jobs" / f"{alive}-def").mkdir()
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "keep.txt").write_text("user data")
        (work / "jobs" / f"{dead}-link").symlink_to(outside)  # never followed
        proofs = [ProofContainer(f"c-{w}", proof_container_name(w), w, 1.0) for w in (dead, alive)]
        engine = FakeEngine(proofs=proofs)
        j = janitor(tmp_path, engine)
        j.at_start()
        assert [p.owner for p in engine.removed_containers] == [dead]
        assert engine.removed_refs == [f"{REPO}:{dead}"]
        assert not (work / "jobs" / f"{dead}-abc").exists()
        assert (work / "jobs" / f"{alive}-def").exists()
        assert (outside / "keep.txt").read_text() == "user data"
        assert not (work / "workers" / f"{dead}.lock").exists()
        assert (work / "workers" / f"{alive}.lock").exists()
    finally:
        live.kill()
        live.wait()


def test_proofs_of_unknown_owners_go_only_when_stale(tmp_path):
    stranger = new_worker_id()  # a worker with another work dir on the same engine
    young = ProofContainer("c1", proof_container_name(stranger), stranger, 10.0)
    old = ProofContainer("c2", proof_container_name(stranger), stranger, 5000.0)
    legacy = ProofContainer("c3", "happy_turing", "", 5000.0)  # a proof from before names
    engine = FakeEngine(proofs=[young, old, legacy])
    janitor(tmp_path, engine, stale=900).at_start()
    assert engine.removed_containers == [old, legacy]


@pytest.mark.parametrize("bad", ["../w123456789abc", "w12345", "W123456789ABC"])
def test_worker_ids_are_checked(tmp_path, bad):
    with pytest.raises(ValueError):
        WorkerLedger(tmp_path, bad)


def test_tracker_writes_the_ledger_as_the_job_goes(tmp_path):
    ledger = WorkerLedger(tmp_path)
    ledger.claim()
    tracker = JobTracker(ledger)
    tracker.tagged(f"{REPO}:b1")
    saved = json.loads((ledger.root / f"{ledger.worker_id}.json").read_text())
    assert saved["jobs"][0]["references"] == [f"{REPO}:b1"]
    ledger.release()
    assert not list(ledger.root.iterdir())


def test_an_unwritable_ledger_never_fails_the_job(tmp_path, caplog):
    ledger = WorkerLedger(tmp_path)
    ledger.claim()
    (ledger.root / f"{ledger.worker_id}.json.tmp").mkdir()  # the write fails as on a full disk
    JobTracker(ledger).tagged(f"{REPO}:b1")
    assert "cannot write the worker ledger" in caplog.text
