"""Stages are declared once (shared.stages.STAGES) and everything else derives from them.

Three checks: the derived broker map is exactly the one existing brokers were provisioned with;
a stage added to the spec shows up everywhere that lists stages (without touching any of those
places); and no module writes a list of stage names or routing keys of its own.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from services.reporter.cdevents import translate, validate
from shared.bus import topology as t
from shared.history.replay import stage_triggers
from shared.report.view import step_order
from shared.stages import (
    BUILD_FINISHED,
    BUILD_REQUESTED,
    BUILD_WAITING,
    CANCEL_REQUESTED,
    STAGE_FINISHED,
    STAGE_NAMES,
    STAGE_STARTED,
    STAGES,
    StageSpec,
    catalogue,
    routing_keys,
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
    "kiln.attester.images": {"image.pushed", "manifest.pushed"},
    "kiln.deployer.gate": {
        "build.requested",
        "compile.completed",
        "image.pushed",
        "image.failed",
        "manifest.pushed",
        "stage.finished",
        "build.finished",
        "build.cancel.requested",
        "rollback.requested",  # the deploy stage's also_consumes: a rollback run (kiln rollback)
    },
    "kiln.reporter.history": {"#"},
    "kiln.reporter.notify": {"build.requested", "stage.#", "build.finished"},
    "kiln.reporter.cdevents": {"#"},
    "kiln.gateway.subscriptions": {"#"},
    "kiln.gateway.concurrency": {"build.finished", "build.cancel.requested"},
}
PROVISIONED_PUBLISHES = {
    "gateway": {
        t.EVENTS_EXCHANGE: {
            "build.requested",
            "rollback.requested",
            "build.waiting",
            "build.cancel.requested",
        }
    },
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
    "attester": {t.EVENTS_EXCHANGE: {"stage.started", "stage.finished", "build.finished"}},
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
        t.EVENTS_EXCHANGE: {"build.finished"},  # the watchdog
        t.CDEVENTS_EXCHANGE: {
            "pipelinerun.queued",
            "pipelinerun.started",
            "pipelinerun.finished",
            "taskrun.started",
            "taskrun.finished",
            "artifact.packaged",
            "artifact.published",
            "artifact.signed",
            "service.deployed",
        },
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
        "attester",
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
        **dict.fromkeys(("scan", "audit", "attest"), ("image.pushed",)),
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
# The spec as it was before the attest stage landed: adding ATTEST to it must give everything the
# real entry gives (the proof that a stage is one spec entry), whatever the real entry now says.
BEFORE = tuple(s for s in STAGES if s.name != "attest")
BEFORE_NAMES = tuple(s.name for s in BEFORE)
WITH_ATTEST = (*BEFORE[:6], ATTEST, *BEFORE[6:])  # after scan


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
    before = next(s for s in t.services(BEFORE) if s.name == "reporter")
    assert "artifact.signed" not in before.keys_published(t.CDEVENTS_EXCHANGE)


def test_an_added_stage_can_be_replayed():
    assert stage_triggers(WITH_ATTEST)["attest"] == ("image.pushed",)


def test_an_added_stage_is_in_the_catalogue_and_the_email_order():
    names = [s["name"] for s in catalogue(WITH_ATTEST)["stages"]]
    assert names == [*BEFORE_NAMES[:6], "attest", *BEFORE_NAMES[6:]]
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
    assert len(translate(envelope, build_url="http://kiln.test/builds/1", stages=BEFORE)) == 1
    failed = Envelope.new(
        StageFinished(stage="attest", status="failed", target="api", platform="linux/amd64", detail=detail),
        source="/kiln/attester",
        package="acme",
        build_id=_BUILD_ID,
    )
    assert len(translate(failed, build_url="http://kiln.test/builds/1", stages=WITH_ATTEST)) == 1


_BUILD_ID = "b-1"


def test_the_gateway_serves_the_catalogue():
    from fastapi.testclient import TestClient

    from tests.unit.test_gateway_fakes import RecordingPublisher, fake_app, make_secrets

    # With a token, so the test does not depend on whether reads need one (the process's KILN_HOST).
    secrets = make_secrets()
    with TestClient(fake_app(None, secrets, RecordingPublisher())) as client:
        reply = client.get("/api/catalogue", headers={"Authorization": f"Bearer {secrets['api']}"})
        body = reply.json()
    assert reply.status_code == 200, reply.text
    assert [s["name"] for s in body["stages"]] == list(STAGE_NAMES)
    assert body["stages"][2] == {**body["stages"][2], "name": "compile", "label": "Compile", "order": 2}
    # What the dashboard's live view subscribes to: the keys it used to list by hand.
    assert set(body["routing_keys"]) == {
        *(BUILD_WAITING, BUILD_REQUESTED, STAGE_STARTED, STAGE_FINISHED, CANCEL_REQUESTED, BUILD_FINISHED),
        "rollback.requested",  # a rollback run's first event
        "compile.completed",
        "image.requested.amd64",
        "image.requested.arm64",
        "image.pushed",
        "image.failed",
        "manifest.pushed",
        "scan.completed",
        "audit.completed",
        "deploy.completed",
        "verify.completed",
    }


# --- nobody lists stages or routing keys but the spec -----------------------------------------

SCANNED = ("shared", "services", "cli")
# Files that may write a sequence of stage names or routing keys, and why.
ALLOWED = {
    "shared/stages.py": "the spec itself",
    "shared/bus/topology.py": "the non-stage consumers' bindings and the gate's extra inputs, declared once",
    "services/reporter/cdevents/translate.py": "the CDEvents table: Kiln event -> CDEvents type",
    "services/gateway/runs.py": "the build page's deploy panel shows the deploy and verify steps",
    "cli/progress.py": "result-line formatters keyed by emitted keys (checked below)",
    "shared/config/env_override.py": "config sections, some named like the stages they configure",
    "shared/events/scan.py": "audit modes (deps, config, secrets, image), not stages",
    "services/scanner/audit.py": "audit modes (deps, config, secrets, image), not stages",
    "services/deployer/__main__.py": "the deployer's CLI subcommands that take --image",
}
KNOWN_KEYS = set(routing_keys()) | {k for spec in STAGES for k in spec.triggers()}


def _literal_strings(node: ast.AST) -> list[str]:
    elements = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _is_stage_list(node: ast.AST, strings: list[str]) -> bool:
    # A dict keyed by stage-like names is a record (a detail's "compile" and "deploy" sections,
    # the CLI's "compile"/"deploy" commands), not a list of stages; its keys count as routing keys.
    return not isinstance(node, ast.Dict) and sum(s in STAGE_NAMES for s in strings) >= 2


def _offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            strings = _literal_strings(node)
            keys = [s for s in strings if s in KNOWN_KEYS]
            if _is_stage_list(node, strings) or len(keys) >= 2:
                found.append(f"line {node.lineno}: {sorted(set(strings) & (KNOWN_KEYS | set(STAGE_NAMES)))}")
    return found


def test_no_python_module_lists_stages_or_routing_keys():
    offences = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in ALLOWED and (found := _offences(path)):
                offences[relative] = found
    assert not offences, f"derive these from shared.stages (or allow-list them with a reason): {offences}"


def test_the_dashboard_lists_no_routing_keys_or_stages():
    dashboard = ROOT / "services/gateway/dashboard"
    quoted = re.compile(r"[\"']([a-z]+(?:\.[a-z0-9]+)*)[\"']")
    for path in [*dashboard.rglob("*.js"), *dashboard.rglob("*.html")]:
        strings = quoted.findall(path.read_text())
        keys = {s for s in strings if s in KNOWN_KEYS} - {STAGE_STARTED, BUILD_FINISHED}  # lifecycle
        stages = {s for s in strings if s in STAGE_NAMES}
        assert not keys and len(stages) < 2, f"{path.name} lists {sorted(keys | stages)}: use /api/catalogue"


def test_the_cli_result_lines_are_keyed_by_keys_stages_emit():
    from cli.progress import RESULT_LINES

    emitted = {key for spec in STAGES for key in spec.emitted_keys()}
    assert set(RESULT_LINES) <= emitted


def test_every_routing_key_of_the_catalogue_is_an_event_model():
    from shared.events.registry import CATALOGUE

    bases = {model.base_routing_key() for model in CATALOGUE}
    unknown = [key for key in routing_keys() if key not in bases and key.rsplit(".", 1)[0] not in bases]
    assert not unknown, f"stages emit {unknown}, which no event model in shared.events.registry describes"


def test_a_stage_may_consume_more_than_its_trigger():
    """`also_consumes` binds the stage's queue to further events (the attester signs the index
    on manifest.pushed too); a replay of the stage still republishes only its trigger."""
    from dataclasses import replace

    with_index = (*BEFORE[:6], replace(ATTEST, also_consumes=("manifest.pushed",)), *BEFORE[6:])
    queues = {q.name: q for q in t.stage_queues(with_index)}
    assert queues["kiln.attester.images"].bindings == ("image.pushed", "manifest.pushed")
    assert stage_triggers(with_index)["attest"] == ("image.pushed",)
