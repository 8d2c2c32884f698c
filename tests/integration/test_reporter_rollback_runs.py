"""A rollback run in the run history, written by the reporter's real writer on MariaDB: the run
row (trigger kind rollback, the build it goes back to), its result, and the watchdog's view of it
while open (it waits on the deployer, never on the compiler)."""

from __future__ import annotations

import random
import uuid

import pytest

from services.reporter.history_writer import write_batch
from services.reporter.watchdog import open_builds
from shared.events import BuildFinished, Envelope, RollbackRequested
from shared.events.build import Source, Trigger
from shared.history.read_model import build_detail, rollback_target

pytestmark = pytest.mark.integration


def test_a_rollback_run_is_recorded_and_watched_as_one_that_starts_at_deploy(sessions):
    package, target, run_id = "demo", str(uuid.uuid4()), str(uuid.uuid4())
    number = random.randint(10_000_000, 20_000_000)
    requested = RollbackRequested(
        package=package,
        build_number=number,
        to_build_id=target,
        to_number=3,
        version="axion",
        source=Source(repo_url="https://example.invalid/mono.git", ref="refs/heads/main", commit="c0ffee"),
        trigger=Trigger(kind="rollback", actor="token"),
    )
    with sessions() as session:
        write_batch(session, [Envelope.new(requested, source="gateway", build_id=run_id, package=package)])
    with sessions() as session:
        (watched,) = [b for b in open_builds(session) if b.build_id == run_id]
        assert watched.starts_at == "deploy"
        run = build_detail(session, run_id)["build"]
        assert (run["trigger_kind"], run["build_number"], run["commit_sha"]) == ("rollback", number, "c0ffee")
        assert run["options"]["rollback_to"] == 3 and run["options"]["rollback_to_build"] == target
    finished = BuildFinished(status="succeeded", duration_ms=5000)
    with sessions() as session:
        write_batch(session, [Envelope.new(finished, source="deployer", build_id=run_id, package=package)])
    with sessions() as session:
        assert all(b.build_id != run_id for b in open_builds(session))
        found = rollback_target(session, package, number)
        # A rollback run is a build of the package under its number; it never ran a deploy step here.
        assert found["build_id"] == run_id and found["status"] == "succeeded" and not found["deployed"]
