"""A rollback run in the deployer, on its real tables (SQLite) with a fake substrate: what it
redeploys comes from the deployer's own record of the earlier build's release, never from the
event, and every refusal ends the run failed at deploy with nothing deployed."""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from services.deployer.deploy_step import DeployStep
from services.deployer.gate import ImageState
from services.deployer.models import DeployerBuild, DeployerFact, DeployerImage, DeployerRelease
from services.deployer.release_log import ReleaseLog
from services.deployer.rollback import on_rollback_requested
from services.deployer.store import GateStore
from shared.config import load_config
from shared.db.models import Base
from shared.events import BuildFinished, DeployCompleted, RollbackRequested, StageFinished
from shared.naming import image_repository
from tests.unit.test_deployer_gate import Envelope, FakeContext
from tests.unit.test_deployer_verify import FakeProbe, FakeSubstrate

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_CONFIG = ROOT / "examples" / "operator" / "config.yaml"
SERVICES = ("report", "scheduler", "storage-worker", "webhook")
PLATFORM = "linux/amd64"


def reference(service: str, digit: str) -> str:
    repository = image_repository("127.0.0.1:5000", "kiln", "axion", service, "demo", PLATFORM)
    return f"{repository}@sha256:{digit * 64}"


class Deployer:
    """The deploy step and the rollback handler as bootstrap wires them, around fakes."""

    def __init__(self):
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        tables = [DeployerBuild, DeployerImage, DeployerFact, DeployerRelease]
        Base.metadata.create_all(engine, tables=[t.__table__ for t in tables])
        sessions = sessionmaker(engine, expire_on_commit=False)
        self.store, self.releases = GateStore(sessions), ReleaseLog(sessions)
        self.substrate = FakeSubstrate(broken_image="bad")
        self.substrate.release = None  # nothing deployed yet
        self.pruned: set[str] = set()
        self.unsigned: set[str] = set()
        cfg = load_config(OPERATOR_CONFIG, {"KILN_KEYS_DIR": "/tmp/k"})
        self.step = DeployStep(
            store=self.store,
            load_config=lambda: cfg,
            config_path=OPERATOR_CONFIG,
            substrate_for=lambda name: self.substrate,
            probe=FakeProbe(self.substrate),
            platform=PLATFORM,
            env={},
            check_signatures=lambda refs: [f"{r} is not signed" for r in refs if r in self.unsigned],
            releases=self.releases,
            missing_images=lambda refs: [r for r in refs if r in self.pruned],
            sleep=lambda s: None,
        )
        self.rollback = partial(
            on_rollback_requested,
            store=self.store,
            releases=self.releases,
            deploy=self.step,
            platform=PLATFORM,
        )

    def build(self, digit: str, package: str = "demo") -> str:
        """A build through the gate's deploy: its images `sha256:<digit>…`."""
        build_id = str(uuid.uuid4())
        self.store.ensure_build(build_id, package, {}, {})
        assert self.store.claim_deploy(build_id, "e-" + build_id)
        images = []
        for service in SERVICES:
            repository, _, digest = reference(service, digit).partition("@")
            images.append(ImageState(service, PLATFORM, True, repository=repository, digest=digest))
        ctx = FakeContext(build_id, Envelope("e-" + build_id), package=package)
        self.step(ctx, self.store.build(build_id), images)
        assert ctx.emitted[-1].status == "succeeded", ctx.emitted[-1]
        return build_id

    def roll_back(
        self, to_build: str, to_number: int = 1, *, package="demo", envelope_package="demo", event_id=None
    ):
        run_id = str(uuid.uuid4())
        event = RollbackRequested(package=package, build_number=9, to_build_id=to_build, to_number=to_number)
        ctx = FakeContext(run_id, Envelope(event_id or str(uuid.uuid4())), package=envelope_package)
        self.rollback(event, ctx)
        return run_id, ctx.emitted


@pytest.fixture
def deployer():
    return Deployer()


def running(deployer) -> dict[str, str]:
    return {s: ref for s, ref in deployer.substrate.release.images.items() if s in SERVICES}


def test_a_rollback_redeploys_the_earlier_builds_digests_and_config_and_ends_its_own_run(deployer):
    first = deployer.build("1")
    # What build 1's containers mounted; today's config (the second build's) differs.
    recorded = deployer.releases.get(first)
    deployer.releases.record(first, "demo", PLATFORM, recorded.images, '{"then": true}\n', True)
    deployer.build("2")
    assert running(deployer) == {s: reference(s, "2") for s in SERVICES}

    run_id, emitted = deployer.roll_back(first)

    assert running(deployer) == {s: reference(s, "1") for s in SERVICES}
    assert deployer.substrate.configs[-1] == '{"then": true}\n'
    deploy = next(e for e in emitted if isinstance(e, StageFinished) and e.stage == "deploy")
    assert deploy.status == "succeeded" and deploy.detail["rollback_to"] == 1
    assert deploy.detail["rollback_to_build"] == first
    assert any(isinstance(e, DeployCompleted) and not e.rolled_back for e in emitted)
    assert isinstance(emitted[-1], BuildFinished) and emitted[-1].status == "succeeded"
    # The run's own release is recorded: a rollback to the rollback redeploys the same.
    assert deployer.releases.get(run_id).images == {s: reference(s, "1") for s in SERVICES}
    assert deployer.store.build(run_id).status == "finished"


def refused(emitted) -> BuildFinished:
    finished = emitted[-1]
    assert isinstance(finished, BuildFinished) and finished.status == "failed", emitted
    assert finished.failed_stage == "deploy"
    assert not any(isinstance(e, DeployCompleted) for e in emitted)
    return finished


def test_pruned_images_end_the_run_failed_naming_them_and_nothing_is_deployed(deployer):
    first = deployer.build("1")
    deployer.build("2")
    deployer.pruned = {reference("webhook", "1"), reference("report", "1")}
    applied = len(deployer.substrate.applied)

    _, emitted = deployer.roll_back(first)

    error = refused(emitted).error
    assert error.startswith("build 1's images were pruned: ")
    assert reference("webhook", "1") in error and reference("report", "1") in error
    assert reference("scheduler", "1") not in error
    assert len(deployer.substrate.applied) == applied
    assert running(deployer) == {s: reference(s, "2") for s in SERVICES}


def test_a_rollback_is_no_way_around_the_signature_check(deployer):
    first = deployer.build("1")
    deployer.build("2")
    deployer.unsigned = {reference("webhook", "1")}  # e.g. the key was rotated since, or re-pushed

    _, emitted = deployer.roll_back(first)

    assert "refused to deploy" in refused(emitted).error and "not signed" in emitted[-1].error
    assert running(deployer) == {s: reference(s, "2") for s in SERVICES}


def test_a_forged_rollback_to_another_packages_build_is_refused(deployer):
    other = str(uuid.uuid4())  # a healthy release the deployer recorded for package other
    deployer.releases.record(other, "other", PLATFORM, {"webhook": reference("webhook", "3")}, "{}\n", True)
    deployer.build("2")

    _, emitted = deployer.roll_back(other)

    assert "is a build of package 'other', not 'demo'" in refused(emitted).error
    assert running(deployer) == {s: reference(s, "2") for s in SERVICES}


def test_a_request_whose_package_is_not_its_envelopes_is_refused(deployer):
    first = deployer.build("1")
    _, emitted = deployer.roll_back(first, envelope_package="other")
    assert "names package 'demo' but is an event of 'other'" in refused(emitted).error


def test_a_build_never_deployed_or_unhealthy_is_no_rollback_target(deployer):
    deployer.build("2")
    _, emitted = deployer.roll_back(str(uuid.uuid4()), to_number=7)
    assert "build #7" in refused(emitted).error and "no release recorded" in emitted[-1].error

    failed = str(uuid.uuid4())
    deployer.releases.record(
        failed, "demo", PLATFORM, {s: reference(s, "4") for s in SERVICES}, "{}\n", False
    )
    _, emitted = deployer.roll_back(failed, to_number=4)
    assert "failed its verify" in refused(emitted).error
    assert running(deployer) == {s: reference(s, "2") for s in SERVICES}


def test_a_redelivered_request_redoes_its_work_and_a_duplicate_does_nothing(deployer):
    first = deployer.build("1")
    deployer.build("2")
    event = RollbackRequested(package="demo", to_build_id=first, to_number=1)
    run_id = str(uuid.uuid4())
    # The worker died mid-deploy: the run is claimed by event r1, nothing was emitted.
    deployer.store.ensure_build(run_id, "demo", {}, {})
    assert deployer.store.claim_deploy(run_id, "r1")
    redelivered = FakeContext(run_id, Envelope("r1"))
    deployer.rollback(event, redelivered)
    assert (
        isinstance(redelivered.emitted[-1], BuildFinished) and redelivered.emitted[-1].status == "succeeded"
    )
    for event_id in ("r2", "r1"):  # another request for the same run; r1 again after the end
        late = FakeContext(run_id, Envelope(event_id))
        deployer.rollback(event, late)
        assert late.emitted == []
