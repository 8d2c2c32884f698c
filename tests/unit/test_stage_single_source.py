"""Stages are declared once (shared.stages.STAGES) and everything else derives from them.

Three checks: the derived broker map is exactly the one existing brokers were provisioned with;
a stage added to the spec shows up everywhere that lists stages (without touching any of those
places); and no module writes a list of stage names or routing keys of its own.
"""

from __future__ import annotations

from pathlib import Path

from services.reporter.cdevents import translate, validate
from shared.bus import topology as t
from shared.history.replay import stage_triggers
from shared.report.view import step_order
from shared.stages import (
    STAGE_NAMES,
    STAGES,
    StageSpec,
    catalogue,
)

ROOT = Path(__file__).resolve().parents[2]

# The broker as it was provisioned before the queues were derived (plus stage.finished on the
# gate, which the gate facts need). Renaming a queue strands its messages: this must not change.
PROVISIONED_QUEUES = {
    "kiln.compiler.builds": {"build.requested"},
    "kiln.imager.amd64": {"image.requested.amd64"},
    "kiln.imager.arm64": {"image.requested.arm64"},
    "kiln.imager.manifests": {"compile.completed", "image.pushed"},
    "kiln.scanner.images": {"image.pushed"},
    "kiln.deployer.gate": {
        "build.requested",
        "compile.completed",
        "image.pushed",
        "image.failed",
        "manifest.pushed",
        "stage.finished",
        "build.finished",
        "build.cancel.requested",
    },
    "kiln.reporter.history": {"#"},
    "kiln.reporter.notify": {"build.requested", "stage.#", "build.finished"},
    "kiln.reporter.cdevents": {"#"},
    "kiln.gateway.subscriptions": {"#"},
}
PROVISIONED_PUBLISHES = {
    "gateway": {t.EVENTS_EXCHANGE: {"build.requested", "build.cancel.requested"}},
    "compiler": {
        t.EVENTS_EXCHANGE: {
            "stage.started",
            "stage.finished",
            "compile.completed",
            "image.requested.amd64",
            "image.requested.arm64",
            "build.finished",
        },
        t.LOGS_EXCHANGE: {"log.config", "log.keys", "log.compile"},
    },
    "imager": {
        t.EVENTS_EXCHANGE: {
            "stage.started",
            "stage.finished",
            "image.pushed",
            "image.failed",
            "manifest.pushed",
            "build.finished",
        },
        t.LOGS_EXCHANGE: {"log.image.amd64", "log.image.arm64", "log.push.amd64", "log.push.arm64"},
    },
    "scanner": {
        t.EVENTS_EXCHANGE: {
            "stage.started",
            "stage.finished",
            "scan.completed",
            "audit.completed",
            "build.finished",
        }
    },
    "deployer": {
        t.EVENTS_EXCHANGE: {
            "stage.started",
            "stage.finished",
            "deploy.completed",
            "verify.completed",
            "build.finished",
        }
    },
    "reporter": {
        t.CDEVENTS_EXCHANGE: {
            "pipelinerun.queued",
            "pipelinerun.started",
            "pipelinerun.finished",
            "taskrun.started",
            "taskrun.finished",
            "artifact.packaged",
            "artifact.published",
            "service.deployed",
        }
    },
}


def test_derived_queues_and_bindings_are_the_provisioned_ones():
    assert {q.name: set(q.bindings) for q in t.WORK_QUEUES} == PROVISIONED_QUEUES
    assert len(t.WORK_QUEUES) == len(PROVISIONED_QUEUES)
    assert {q.name: q.prefetch for q in t.WORK_QUEUES if q.service == "reporter"} == {
        "kiln.reporter.history": 200,
        "kiln.reporter.notify": 1,
        "kiln.reporter.cdevents": 50,
    }


def test_derived_publish_grants_are_the_provisioned_ones():
    assert {s.name: {ex: set(keys) for ex, keys in s.publishes} for s in t.SERVICES} == PROVISIONED_PUBLISHES
    assert {s.name for s in t.SERVICES if s.transient and s.transient[0] == t.CANCEL_WATCH} == {
        "compiler",
        "imager",
        "scanner",
    }
    assert set(t.STAGE_REPLAY_KEYS) == {
        "compile.completed",
        "image.requested.amd64",
        "image.requested.arm64",
        "image.pushed",
    }


def test_replay_triggers_are_the_provisioned_ones():
    assert stage_triggers() == {
        "build": ("build.requested",),
        **dict.fromkeys(("config", "keys", "compile"), ("build.requested",)),
        **dict.fromkeys(("image", "push"), ("image.requested.*",)),
        **dict.fromkeys(("scan", "audit"), ("image.pushed",)),
        **dict.fromkeys(("topology", "scaffold", "deploy", "verify", "docs"), ("compile.completed",)),
    }


# --- a new stage is one entry in the spec -----------------------------------------------------

ATTEST = StageSpec(
    "attest",
    "attester",
    "Attest",
    "image.pushed",
    "images",
    per_image=True,
    gate=True,
    cdevents=("artifact.signed",),
)
WITH_ATTEST = (*STAGES[:6], ATTEST, *STAGES[6:])  # after scan


def test_an_added_stage_gets_its_queue_grants_and_gate_input():
    queues = {q.name: q for q in t.stage_queues(WITH_ATTEST)}
    assert queues["kiln.attester.images"].bindings == ("image.pushed",)
    assert "stage.finished" in queues["kiln.deployer.gate"].bindings
    attester = next(s for s in t.services(WITH_ATTEST) if s.name == "attester")
    assert [q.name for q in attester.queues] == ["kiln.attester.images"]
    assert set(attester.keys_published(t.EVENTS_EXCHANGE)) == {
        "stage.started",
        "stage.finished",
        "build.finished",
    }
    reporter = next(s for s in t.services(WITH_ATTEST) if s.name == "reporter")
    assert "artifact.signed" in reporter.keys_published(t.CDEVENTS_EXCHANGE)
    assert "artifact.signed" not in t.service("reporter").keys_published(t.CDEVENTS_EXCHANGE)


def test_an_added_stage_can_be_replayed():
    assert stage_triggers(WITH_ATTEST)["attest"] == ("image.pushed",)


def test_an_added_stage_is_in_the_catalogue_and_the_email_order():
    names = [s["name"] for s in catalogue(WITH_ATTEST)["stages"]]
    assert names == [*STAGE_NAMES[:6], "attest", *STAGE_NAMES[6:]]
    assert next(s for s in catalogue(WITH_ATTEST)["stages"] if s["name"] == "attest")["label"] == "Attest"
    steps = [{"stage": name, "target": "", "platform": ""} for name in ("docs", "attest", "scan", "config")]
    assert [s["stage"] for s in step_order(steps, WITH_ATTEST)] == ["config", "scan", "attest", "docs"]


def test_an_added_stage_with_cdevents_emits_them_valid():
    from shared.events import Envelope, StageFinished

    detail = {
        "repository": "127.0.0.1:5000/acme/api",
        "digest": "sha256:" + "a" * 64,
        "tag": "1.2.3-amd64",
        "signature": "MEUCIQDexample",
    }
    finished = StageFinished(
        stage="attest", status="succeeded", target="api", platform="linux/amd64", detail=detail
    )
    envelope = Envelope.new(finished, source="/kiln/attester", package="acme", build_id=_BUILD_ID)
    produced = translate(envelope, build_url="http://kiln.test/builds/1", stages=WITH_ATTEST)
    assert [c["context"]["type"] for c in produced] == [
        "dev.cdevents.taskrun.finished.0.3.0",
        "dev.cdevents.artifact.signed.0.3.0",
    ]
    for cdevent in produced:
        validate(cdevent)
    signed = produced[1]["subject"]
    assert signed["content"] == {"signature": "MEUCIQDexample"}
    assert signed["id"].startswith("pkg:oci/api@sha256%3A")
    # Without the spec's `cdevents` the same event is only a task run; failed, nothing is claimed.
    assert len(translate(envelope, build_url="http://kiln.test/builds/1")) == 1
    failed = Envelope.new(
        StageFinished(stage="attest", status="failed", target="api", platform="linux/amd64", detail=detail),
        source="/kiln/attester",
        package="acme",
        build_id=_BUILD_ID,
    )
    assert len(translate(failed, build_url="http://kiln.test/builds/1", stages=WITH_ATTEST)) == 1


_BUILD_ID = "b-1"
