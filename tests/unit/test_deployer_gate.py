"""The gate with its real tables on in-memory SQLite (the same models the migration creates)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import partial

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from services.deployer import handlers as h
from services.deployer.models import DeployerBuild, DeployerImage
from services.deployer.store import GateStore
from shared.db.models import Base
from shared.events import (
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    ImageFailed,
    ImagePushed,
    ScanCompleted,
)
from shared.events.build import Options, Source
from shared.events.compile import TargetPlatform

PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class Envelope:
    id: str


@dataclass
class FakeContext:
    build_id: str
    envelope: Envelope
    package: str = "demo"
    emitted: list = field(default_factory=list)

    def emit(self, event):
        self.emitted.append(event)


@pytest.fixture
def store():
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine, tables=[DeployerBuild.__table__, DeployerImage.__table__])
    return GateStore(sessionmaker(engine, expire_on_commit=False))


class Gate:
    def __init__(self, store, require_scan=True):
        self.build_id = str(uuid.uuid4())
        self.deployed = []
        self.emitted = []
        deps = {"store": store, "deploy": self._deploy, "require_scan": require_scan}
        self.table = {
            BuildRequested: partial(h.on_build_requested, store=store),
            CompileCompleted: partial(h.on_compile_completed, **deps),
            ImagePushed: partial(h.on_image_pushed, **deps),
            ImageFailed: partial(h.on_image_failed, **deps),
            ScanCompleted: partial(h.on_scan_completed, **deps),
            BuildFinished: partial(h.on_build_finished, store=store),
            BuildCancelRequested: partial(h.on_cancel_requested, store=store),
        }

    def _deploy(self, ctx, build, images):
        self.deployed.append(sorted(i.reference for i in images))

    def send(self, event, event_id=None):
        ctx = FakeContext(self.build_id, Envelope(event_id or str(uuid.uuid4())))
        self.table[type(event)](event, ctx)
        self.emitted += ctx.emitted
        return ctx

    def finished(self):
        return [e for e in self.emitted if isinstance(e, BuildFinished)]


def compiled(*targets):
    return CompileCompleted(
        ok=True, targets=tuple(TargetPlatform(target=t, platform=p) for t in targets for p in PLATFORMS)
    )


def pushed(target, platform):
    return ImagePushed(
        target=target,
        platform=platform,
        repository=f"r/{target}",
        tag="b1",
        digest="sha256:" + "a" * 64,
        size_bytes=1,
    )


def scanned(target, platform, verdict="pass"):
    return ScanCompleted(
        target=target,
        platform=platform,
        digest="sha256:" + "a" * 64,
        scanner="trivy",
        verdict=verdict,
        counts={"CRITICAL": 2} if verdict == "fail" else {},
    )


def all_pushed_and_scanned(gate, targets=("webhook", "worker")):
    for t in targets:
        for p in PLATFORMS:
            gate.send(pushed(t, p))
            gate.send(scanned(t, p))


def test_deploys_once_when_every_expected_image_is_pushed_and_scanned(store):
    gate = Gate(store)
    gate.send(BuildRequested(package="demo"))
    all_pushed_and_scanned(gate, ["webhook"])  # arrives before compile.completed: still waits
    assert gate.deployed == []
    gate.send(compiled("webhook", "worker"))
    gate.send(pushed("worker", "linux/amd64"))
    gate.send(scanned("worker", "linux/amd64"))
    gate.send(pushed("worker", "linux/arm64"))
    assert gate.deployed == []  # arm64 worker not scanned yet
    last = scanned("worker", "linux/arm64")
    ctx = gate.send(last)
    assert len(gate.deployed) == 1 and len(gate.deployed[0]) == 4
    gate.send(last, event_id=str(uuid.uuid4()))  # a replay with a new id changes nothing
    assert len(gate.deployed) == 1
    gate.send(last, event_id=ctx.envelope.id)  # a redelivery of the winner may redo its work
    assert len(gate.deployed) == 2


def test_scan_not_required_deploys_after_pushes(store):
    gate = Gate(store, require_scan=False)
    gate.send(compiled("webhook"))
    for p in PLATFORMS:
        gate.send(pushed("webhook", p))
    assert len(gate.deployed) == 1


def test_image_failure_ends_the_build_failed_once_naming_the_target(store):
    gate = Gate(store)
    gate.send(compiled("webhook"))
    gate.send(ImageFailed(target="webhook", platform="linux/arm64", error="pip exploded", log_tail=("x",)))
    gate.send(ImageFailed(target="webhook", platform="linux/amd64", error="again"))
    (finished,) = gate.finished()
    assert finished.status == "failed" and finished.failed_stage == "image"
    assert "webhook (linux/arm64)" in finished.error and "pip exploded" in finished.error
    all_pushed_and_scanned(gate, ["webhook"])
    assert gate.deployed == [] and len(gate.finished()) == 1


def test_failing_scan_ends_the_build_with_the_counts(store):
    gate = Gate(store)
    gate.send(compiled("webhook"))
    gate.send(pushed("webhook", "linux/amd64"))
    gate.send(scanned("webhook", "linux/amd64", verdict="fail"))
    (finished,) = gate.finished()
    assert finished.failed_stage == "scan" and "CRITICAL=2" in finished.error and "webhook" in finished.error


def test_skip_deploy_ends_the_build_succeeded_after_the_gate(store):
    gate = Gate(store)
    gate.send(BuildRequested(package="demo", options=Options(skip_deploy=True)))
    gate.send(compiled("webhook"))
    all_pushed_and_scanned(gate, ["webhook"])
    assert gate.deployed == []
    assert [f.status for f in gate.finished()] == ["succeeded"]


def test_failed_compile_is_left_to_the_compiler(store):
    gate = Gate(store)
    gate.send(CompileCompleted(ok=False))
    assert gate.emitted == [] and gate.deployed == []


def test_cancel_finishes_once_and_not_after_another_stage_finished(store):
    gate = Gate(store)
    gate.send(BuildCancelRequested(reason="user"))
    gate.send(BuildCancelRequested(reason="user again"))
    assert [f.status for f in gate.finished()] == ["cancelled"]
    other = Gate(store)
    other.send(BuildFinished(status="failed", failed_stage="compile"))
    other.send(BuildCancelRequested(reason="late"))
    assert other.finished() == []


def test_build_requested_source_is_kept_for_the_docs_stage(store):
    gate = Gate(store)
    source = Source(repo_url="https://git.example.com/demo.git", ref="main", commit="c" * 40)
    gate.send(BuildRequested(package="demo", source=source))
    gate.send(BuildRequested(package="demo", source=Source(path="/elsewhere")))  # a replay changes nothing
    assert store.build(gate.build_id).source == source.model_dump(mode="json")
