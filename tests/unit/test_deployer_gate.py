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
from services.deployer.gate import (
    Fact,
    ImageState,
    decide,
    facts_without_a_push,
    gate_facts,
    rerun_starts_at,
    stale_facts,
)
from services.deployer.models import DeployerBuild, DeployerFact, DeployerImage
from services.deployer.settings import DeployerSettings
from services.deployer.store import GateStore
from shared.bus.dispatch import Only
from shared.db.models import Base
from shared.events import (
    BuildCancelRequested,
    BuildFinished,
    BuildRequested,
    CompileCompleted,
    ImageFailed,
    ImagePushed,
    StageFinished,
)
from shared.events.build import Options, Source
from shared.events.compile import TargetPlatform
from shared.stages import GATE_FACTS, STAGES, StageSpec

PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class Envelope:
    id: str
    attempt: int = 1
    key: str = ""
    replayonly: str | None = None

    def routing_key(self):
        return self.key


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
    tables = [DeployerBuild.__table__, DeployerImage.__table__, DeployerFact.__table__]
    Base.metadata.create_all(engine, tables=tables)
    return GateStore(sessionmaker(engine, expire_on_commit=False))


# These tests are about the push and scan facts; a gate with the spec's own facts (attest too)
# is test_the_spec_gate_facts_are_the_defaults below, an injected extra stage is the attest test.
PUSH_AND_SCAN = ("push", "scan")


class Gate:
    def __init__(self, store, required=PUSH_AND_SCAN, facts=PUSH_AND_SCAN):
        self.build_id = str(uuid.uuid4())
        self.deployed = []
        self.emitted = []
        deps = {"store": store, "deploy": self._deploy, "required": required}
        self.table = {
            BuildRequested: partial(h.on_build_requested, store=store),
            CompileCompleted: partial(h.on_compile_completed, **deps),
            ImagePushed: partial(h.on_image_pushed, **deps),
            ImageFailed: partial(h.on_image_failed, **deps),
            StageFinished: Only(
                partial(h.on_stage_finished, **deps, facts=facts),
                accepts=partial(h.records_fact, facts=facts),
            ),
            BuildFinished: partial(h.on_build_finished, store=store),
            BuildCancelRequested: partial(h.on_cancel_requested, store=store),
        }

    def _deploy(self, ctx, build, images):
        self.deployed.append(sorted(i.reference for i in images))

    def send(self, event, event_id=None, attempt=1, only=None):
        envelope = Envelope(event_id or str(uuid.uuid4()), attempt, event.routing_key(), only)
        ctx = FakeContext(self.build_id, envelope)
        self.table[type(event)](event, ctx)
        self.emitted += ctx.emitted
        return ctx

    def finished(self):
        return [e for e in self.emitted if isinstance(e, BuildFinished)]


def compiled(*targets):
    return CompileCompleted(
        ok=True, targets=tuple(TargetPlatform(target=t, platform=p) for t in targets for p in PLATFORMS)
    )


def stage_finished(stage, target, platform, status="succeeded", **fields):
    return StageFinished(stage=stage, status=status, target=target, platform=platform, **fields)


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
    """The scanner's stage.finished(scan), as services/scanner/handlers.py emits it."""
    failed = verdict == "fail"
    return stage_finished(
        "scan",
        target,
        platform,
        "failed" if failed else "succeeded",
        detail={
            "scanner": "trivy",
            "counts": {"CRITICAL": 2} if failed else {},
            "verdict": verdict,
            "blocking": ["CVE-2024-1"] if failed else [],
        },
        error="2 CRITICAL findings (max 0)" if failed else None,
    )


def all_pushed_and_scanned(gate, targets=("webhook", "worker")):
    for t in targets:
        for p in PLATFORMS:
            gate.send(pushed(t, p))
            gate.send(stage_finished("push", t, p))
            gate.send(scanned(t, p))


def test_deploys_once_when_every_expected_image_is_pushed_and_scanned(store):
    gate = Gate(store)
    gate.send(BuildRequested(package="demo"))
    all_pushed_and_scanned(gate, ["webhook"])  # arrives before compile.completed: still waits
    assert gate.deployed == []
    gate.send(compiled("webhook", "worker"))
    for p in PLATFORMS:
        gate.send(pushed("worker", p))
        gate.send(stage_finished("push", "worker", p))
    gate.send(scanned("worker", "linux/amd64"))
    assert gate.deployed == []  # arm64 worker not scanned yet
    last = scanned("worker", "linux/arm64")
    ctx = gate.send(last)
    assert len(gate.deployed) == 1 and len(gate.deployed[0]) == 4
    gate.send(last, event_id=str(uuid.uuid4()))  # a replay with a new id changes nothing
    assert len(gate.deployed) == 1
    gate.send(last, event_id=ctx.envelope.id)  # a redelivery of the winner may redo its work
    assert len(gate.deployed) == 2


def test_scan_not_required_deploys_after_pushes(store):
    required = DeployerSettings(deployer_require_scan=False).required_facts(PUSH_AND_SCAN)
    assert required == ("push",)
    gate = Gate(store, required=required)
    gate.send(compiled("webhook"))
    gate.send(scanned("webhook", "linux/amd64", verdict="fail"))  # an optional fact does not stop it
    for p in PLATFORMS:
        gate.send(pushed("webhook", p))
        gate.send(stage_finished("push", "webhook", p))
    assert len(gate.deployed) == 1 and gate.finished() == []


def test_optional_facts_setting_and_the_old_switch_agree(monkeypatch):
    monkeypatch.setenv("KILN_DEPLOYER_OPTIONAL_FACTS", "scan")
    assert DeployerSettings().required_facts(PUSH_AND_SCAN) == ("push",)
    assert "scan" not in DeployerSettings().required_facts()
    monkeypatch.delenv("KILN_DEPLOYER_OPTIONAL_FACTS")
    assert DeployerSettings().required_facts() == GATE_FACTS
    with pytest.raises(ValueError, match="unknown gate facts"):
        DeployerSettings(deployer_optional_facts="scna")


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
    assert finished.failed_stage == "scan" and "webhook (linux/amd64)" in finished.error
    assert "CRITICAL=2" in finished.error and "CVE-2024-1" in finished.error and "max 0" in finished.error


def test_skip_deploy_ends_the_build_succeeded_after_the_gate(store):
    gate = Gate(store)
    gate.send(BuildRequested(package="demo", options=Options(skip_deploy=True)))
    gate.send(compiled("webhook"))
    all_pushed_and_scanned(gate, ["webhook"])
    assert gate.deployed == []
    assert [f.status for f in gate.finished()] == ["succeeded"]


def test_skip_push_ends_the_build_succeeded_once_every_push_is_skipped(store):
    """No image.pushed is published, so scan and attest never run: the gate waits only for the
    skipped pushes (today's spec facts: push, scan, attest), then ends the build; nothing deploys."""
    gate = Gate(store, required=GATE_FACTS)
    gate.send(BuildRequested(package="demo", options=Options(skip_push=True)))
    gate.send(compiled("webhook"))
    gate.send(stage_finished("push", "webhook", "linux/amd64", "skipped"))
    assert gate.finished() == []  # arm64 not built yet
    gate.send(stage_finished("push", "webhook", "linux/arm64", "skipped"))
    assert gate.deployed == []
    assert [f.status for f in gate.finished()] == ["succeeded"]


def test_skip_push_still_fails_on_a_failed_image(store):
    gate = Gate(store, required=GATE_FACTS)
    gate.send(BuildRequested(package="demo", options=Options(skip_push=True)))
    gate.send(compiled("webhook"))
    gate.send(ImageFailed(target="webhook", platform="linux/arm64", error="proof failed"))
    assert [(f.status, f.failed_stage) for f in gate.finished()] == [("failed", "image")]


def test_facts_without_a_push_are_the_stages_image_pushed_does_not_start():
    assert facts_without_a_push(GATE_FACTS) == ("push",)
    assert facts_without_a_push(("push", "scan")) == ("push",)


def deployed_build(store):
    gate = Gate(store, required=GATE_FACTS, facts=GATE_FACTS)
    gate.send(BuildRequested(package="demo"))
    gate.send(compiled("webhook"))
    for p in PLATFORMS:
        gate.send(pushed("webhook", p))
        for stage in GATE_FACTS:
            gate.send(stage_finished(stage, "webhook", p))
    assert len(gate.deployed) == 1
    return gate


def test_a_replay_from_deploy_reopens_the_gate_and_deploys_again_once(store):
    gate = deployed_build(store)
    gate.send(BuildFinished(status="succeeded"))  # the deployer's own, after verify
    replayed = compiled("webhook")
    ctx = gate.send(replayed, attempt=2)
    assert len(gate.deployed) == 2  # every fact still holds: straight to deploy
    assert store.build(gate.build_id).attempt == 2
    gate.send(replayed, event_id=ctx.envelope.id, attempt=2)  # its redelivery may redo its work
    gate.send(compiled("webhook"), attempt=2)  # another event of attempt 2: no reopen, no deploy
    assert len(gate.deployed) == 3


def test_a_replay_from_scan_waits_for_the_new_scans_and_attests_then_deploys(store):
    gate = deployed_build(store)
    gate.send(BuildFinished(status="succeeded"))
    gate.send(pushed("webhook", "linux/amd64"), attempt=3)
    gate.send(pushed("webhook", "linux/arm64"), attempt=3)
    assert len(gate.deployed) == 1  # scan and attest of attempt 1 are forgotten
    for p in PLATFORMS:
        gate.send(stage_finished("scan", "webhook", p), attempt=3)
    assert len(gate.deployed) == 1
    for p in PLATFORMS:
        gate.send(stage_finished("attest", "webhook", p), attempt=3)
    assert len(gate.deployed) == 2


def test_a_failing_rescan_fails_the_new_attempt(store):
    gate = deployed_build(store)
    gate.send(BuildFinished(status="succeeded"))
    gate.send(pushed("webhook", "linux/amd64"), attempt=2)
    gate.send(scanned("webhook", "linux/amd64", verdict="fail"), attempt=2)
    assert [(f.status, f.failed_stage) for f in gate.finished()] == [("failed", "scan")]


def test_where_a_rerun_starts_and_what_it_forgets():
    assert rerun_starts_at("image.pushed") == "scan"
    assert rerun_starts_at("compile.completed") == "topology"
    assert rerun_starts_at("build.requested") == "config"
    assert rerun_starts_at("image.failed") == "image"
    assert rerun_starts_at("stage.finished", "push") == "push"
    assert set(stale_facts("scan")) >= {"scan", "attest"} and "push" not in stale_facts("scan")
    assert not set(stale_facts("topology")) & set(GATE_FACTS)
    assert {"image", *GATE_FACTS} <= set(stale_facts("image"))


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


def test_a_new_gate_stage_is_waited_for_without_a_schema_change(store):
    """An `attest` gate stage (issue #18) declared in a stage list: the same tables, handlers and
    decide() wait for its fact per image and deploy once the last one arrives."""
    attest = StageSpec("attest", "attester", "Attest", "image.pushed", "images", per_image=True, gate=True)
    facts = gate_facts((*STAGES, attest))
    assert facts == (*GATE_FACTS, "attest")
    gate = Gate(store, required=facts, facts=facts)
    gate.send(compiled("webhook"))
    all_pushed_and_scanned(gate, ["webhook"])
    assert gate.deployed == []
    gate.send(stage_finished("attest", "webhook", "linux/amd64"))
    assert gate.deployed == []
    gate.send(stage_finished("attest", "webhook", "linux/arm64", "skipped"))
    assert len(gate.deployed) == 1
    rows = {(f.platform, f.fact) for f in store.facts(gate.build_id)}
    assert ("linux/arm64", "attest") in rows


def test_a_failed_new_gate_stage_fails_the_build_naming_it(store):
    facts = (*GATE_FACTS, "attest")
    gate = Gate(store, required=facts, facts=facts)
    gate.send(compiled("webhook"))
    gate.send(stage_finished("attest", "webhook", "linux/arm64", "failed", error="no signing key"))
    (end,) = gate.finished()
    assert end.failed_stage == "attest"
    assert end.error == "attest of webhook (linux/arm64) failed: no signing key"


def test_stage_finished_of_other_stages_and_cancelled_ones_record_nothing(store):
    gate = Gate(store)
    gate.send(BuildRequested(package="demo"))
    gate.send(stage_finished("compile", None, None))
    gate.send(stage_finished("audit", "webhook", "linux/amd64", "failed", error="x"))
    gate.send(stage_finished("scan", "webhook", "linux/amd64", "cancelled"))
    assert store.facts(gate.build_id) == [] and gate.finished() == []


def test_a_redelivered_fact_writes_nothing_twice(store):
    gate = Gate(store)
    assert store.record_fact(gate.build_id, "webhook", "linux/amd64", "scan", True, "no counts")
    assert not store.record_fact(gate.build_id, "webhook", "linux/amd64", "scan", True, "no counts")
    assert store.record_fact(gate.build_id, "webhook", "linux/amd64", "scan", False, "CRITICAL=1")
    assert store.facts(gate.build_id) == [Fact("webhook", "linux/amd64", "scan", False, "CRITICAL=1")]


def test_decide_waits_for_each_required_fact_of_each_expected_image():
    images = [
        ImageState("webhook", "linux/amd64", True, repository="r/w", digest="sha256:1"),
        ImageState("webhook", "linux/arm64", True),
        ImageState("stray", "linux/amd64", False),  # pushed but not expected: not waited for
    ]
    facts = [Fact("webhook", "linux/amd64", "push", True), Fact("webhook", "linux/amd64", "scan", True)]
    assert decide(False, images, facts, required=("push", "scan")).waiting_for == ("compile.completed",)
    decision = decide(True, images, facts, required=("push", "scan"))
    assert decision.action == "wait"
    assert decision.waiting_for == ("webhook linux/arm64: push", "webhook linux/arm64: scan")
    done = [
        *facts,
        Fact("webhook", "linux/arm64", "push", True),
        Fact("webhook", "linux/arm64", "scan", True),
    ]
    images[1] = ImageState("webhook", "linux/arm64", True, repository="r/w", digest="sha256:2")
    assert decide(True, images, done, required=("push", "scan")).action == "deploy"


def test_decide_fails_on_the_first_failed_fact_in_pipeline_order():
    facts = [
        Fact("webhook", "linux/amd64", "push", False, "denied"),
        Fact("webhook", "linux/amd64", "image", False, "pip exploded"),
        Fact("api", "linux/arm64", "scan", True),
    ]
    decision = decide(False, [], facts, required=("push", "scan"))
    assert (decision.action, decision.failed_stage) == ("fail", "image")
    assert decision.error == "image of webhook (linux/amd64) failed: pip exploded"


def test_the_spec_gate_facts_are_the_defaults():
    from services.deployer.settings import DeployerSettings

    assert set(PUSH_AND_SCAN) <= set(GATE_FACTS)
    assert "attest" in GATE_FACTS
    assert DeployerSettings().required_facts() == GATE_FACTS


def test_a_cancelled_build_replays_and_an_old_cancel_does_not_stop_the_new_attempt(store):
    gate = deployed_build(store)
    gate.send(BuildCancelRequested(reason="user"))  # after the deploy: ends attempt 1 cancelled
    assert [f.status for f in gate.finished()] == ["cancelled"]
    gate.send(compiled("webhook"), attempt=2)  # kiln replay --from deploy
    assert len(gate.deployed) == 2
    gate.send(BuildCancelRequested(reason="user"), attempt=1)  # attempt 1's cancel, redelivered
    assert [f.status for f in gate.finished()] == ["cancelled"]
    gate.send(BuildCancelRequested(reason="now"), attempt=2)
    assert [f.status for f in gate.finished()] == ["cancelled", "cancelled"]


def test_replay_only_scan_ends_once_the_rescans_are_in_without_a_deploy(store):
    gate = deployed_build(store)
    gate.send(BuildFinished(status="succeeded"))
    for p in PLATFORMS:
        gate.send(pushed("webhook", p), attempt=2, only="scan")
    assert gate.finished() == []  # attest facts of attempt 1 still stand; scans are redone
    gate.send(stage_finished("scan", "webhook", "linux/amd64"), attempt=2, only="scan")
    assert gate.finished() == []
    gate.send(stage_finished("scan", "webhook", "linux/arm64"), attempt=2, only="scan")
    assert [f.status for f in gate.finished()] == ["succeeded"]
    assert len(gate.deployed) == 1  # nothing after scan reran: no deploy


def test_replay_only_scan_fails_the_attempt_on_a_failing_rescan(store):
    gate = deployed_build(store)
    gate.send(BuildFinished(status="succeeded"))
    gate.send(pushed("webhook", "linux/amd64"), attempt=2, only="scan")
    gate.send(
        stage_finished("scan", "webhook", "linux/amd64", "failed", error="2 critical"), attempt=2, only="scan"
    )
    assert [(f.status, f.failed_stage) for f in gate.finished()][-1] == ("failed", "scan")
    assert len(gate.deployed) == 1


def test_replay_only_compile_ends_at_compile_completed_and_only_deploy_deploys(store):
    gate = deployed_build(store)
    gate.send(BuildFinished(status="succeeded"))
    gate.send(compiled("webhook"), attempt=2, only="compile")
    assert [f.status for f in gate.finished()] == ["succeeded"] and len(gate.deployed) == 1
    gate.send(compiled("webhook"), attempt=3, only="deploy")  # the deployer's own job: deploys
    assert len(gate.deployed) == 2


def test_only_attempt_is_the_job_of_the_stage():
    from services.deployer.gate import only_attempt

    assert only_attempt("deploy", GATE_FACTS) is None and only_attempt("verify", GATE_FACTS) is None
    assert only_attempt("image", GATE_FACTS).required == ("push",)
    assert only_attempt("image", GATE_FACTS).needs_reference
    assert only_attempt("audit", GATE_FACTS).required == ("scan",)  # scan and audit: one job
    assert only_attempt("compile", GATE_FACTS).required == ()
    assert only_attempt("scan", ("push", "attest")).required == ()  # scan optional here
