"""The broker users derived from topology.SERVICES, and that declaration checked against the code:
what each service's modules build (events, give-up reports, live-log stages), what the gateway's
replay may republish, and what the reporter's CDEvents translation emits. A service that starts
publishing a new key fails here first, naming the key to declare, instead of in production with
ACCESS_REFUSED."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared.bus import topology as t
from shared.bus.permissions import NOTHING, all_services, for_service
from shared.events.registry import CATALOGUE
from shared.history import STAGE_TRIGGERS
from shared.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
MODELS = {model.__name__: model for model in CATALOGUE}


def keys_of(model_name: str) -> set[str]:
    model = MODELS[model_name]
    if model.base_routing_key() == "image.requested":  # one key per architecture
        return set(t.image_requested_keys())
    return {model.base_routing_key()}


def built_events(service: str) -> set[str]:
    """Routing keys of every catalogue event a service's code constructs, and of its give-up reports."""
    keys: set[str] = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in MODELS:
                    keys |= keys_of(node.func.id)
                elif node.func.id == "end_build_failed":
                    keys.add("build.finished")
                elif node.func.id == "stage":  # shared.bus.stage: the lifecycle's two events
                    keys |= {"stage.started", "stage.finished"}
                elif node.func.id == "finish_stage":
                    keys.add("stage.finished")
    return keys


def literal_stages(path: Path, call: str, position: int = 0) -> set[str]:
    """String literals at argument `position` or `stage=` of calls to `call` (run, stage)."""
    stages = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == call:
            args = [
                *node.args[position : position + 1],
                *(k.value for k in node.keywords if k.arg == "stage"),
            ]
            stages |= {a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return stages


@pytest.mark.parametrize("spec", t.SERVICES, ids=lambda s: s.name)
def test_declared_event_keys_are_exactly_what_the_service_builds(spec):
    declared = set(spec.keys_published(t.EVENTS_EXCHANGE))
    built = built_events(spec.name)
    assert built <= declared, (
        f"{spec.name} builds {sorted(built - declared)}: declare them in topology.SERVICES"
    )
    assert declared <= built, f"{spec.name} declares {sorted(declared - built)} that no code of it publishes"


def test_live_log_keys_are_the_stages_that_stream_lines():
    compiler = literal_stages(ROOT / "services/compiler/handlers.py", "run")
    assert set(t.service("compiler").keys_published(t.LOGS_EXCHANGE)) == {
        t.log_routing_key(s) for s in compiler
    }
    imager = literal_stages(ROOT / "services/imager/image_job.py", "stage", position=1)
    assert set(t.service("imager").keys_published(t.LOGS_EXCHANGE)) == {
        t.log_routing_key(stage, f"linux/{arch}") for stage in imager for arch in t.ARCHITECTURES
    }


def test_cdevents_keys_are_the_translation_vocabulary():
    """The types the translation table writes (`("<type>", subject, content)`), plus the types
    the stages declare (shared.stages: `cdevents`), are exactly the reporter's grant."""
    source = (ROOT / "services/reporter/cdevents/translate.py").read_text()
    emitted = set(re.findall(r'\(\s*"([a-z]+\.[a-z]+)",\s', source))
    emitted |= {cd_type for spec in STAGES for cd_type in spec.cdevents}
    assert emitted and set(t.service("reporter").keys_published(t.CDEVENTS_EXCHANGE)) == emitted


def test_every_stage_replay_is_covered_by_the_gateway_grant_or_the_opt_in():
    gateway = set(t.service("gateway").keys_published(t.EVENTS_EXCHANGE))
    for stage, keys in STAGE_TRIGGERS.items():
        for key in keys:
            expanded = {
                k
                for k in t.STAGE_REPLAY_KEYS
                if re.fullmatch(key.replace(".", r"\.").replace("*", "[^.]+"), k)
            }
            assert key in gateway or expanded, f"replay of stage {stage} ({key}) is granted nowhere"
    whole_build = STAGE_TRIGGERS["build"]
    assert set(whole_build) <= gateway  # a whole-build replay works without the opt-in


def test_every_work_queue_has_exactly_one_owner():
    owners = [queue.name for spec in t.SERVICES for queue in spec.queues]
    assert sorted(owners) == sorted(queue.name for queue in t.WORK_QUEUES)
    for spec in t.SERVICES:
        assert all(queue.service == spec.name for queue in spec.queues)


def matches(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name) is not None


def test_gateway_user_grants():
    perms = for_service(t.service("gateway"))
    events = perms.topic(t.EVENTS_EXCHANGE)
    assert matches(events.write, "build.requested") and matches(events.write, "build.cancel.requested")
    for forged in ("image.pushed", "build.finished", "image.requested.amd64", "", "build.requested.x"):
        assert not matches(events.write, forged)
    assert matches(events.read, "#")  # the live view binds everything: the dashboard shows it
    assert not matches(perms.write, "amq.default") and not matches(perms.write, t.DEAD_LETTER_EXCHANGE)
    replaying = for_service(t.service("gateway"), allow_stage_replay=True).topic(t.EVENTS_EXCHANGE)
    assert all(matches(replaying.write, key) for key in t.STAGE_REPLAY_KEYS)
    assert not matches(replaying.write, "build.finished")


@pytest.mark.parametrize("perms", all_services(), ids=lambda p: p.service)
def test_no_user_configures_durable_names_or_writes_the_default_exchange(perms):
    durable = [name for q in t.WORK_QUEUES for name in (q.name, q.retry_queue, q.dead_letter_queue)]
    durable += [
        t.EVENTS_EXCHANGE,
        t.LOGS_EXCHANGE,
        t.CDEVENTS_EXCHANGE,
        t.DEAD_LETTER_EXCHANGE,
        t.PARKING_EXCHANGE,
    ]
    assert not [name for name in durable if matches(perms.configure, name)]
    assert not matches(perms.write, "amq.default")
    assert not matches(perms.write, t.DEAD_LETTER_EXCHANGE)
    own = {q.name for q in t.service(perms.service).queues}
    assert {q.name for q in t.WORK_QUEUES if matches(perms.read, q.name)} == own
    parking = perms.topic(t.PARKING_EXCHANGE)
    others = [q for q in t.WORK_QUEUES if q.name not in own]
    assert not [q.name for q in others if matches(parking.write, q.retry_queue)]
    for topic in perms.topics:  # an exchange without a topic permission would allow every key
        assert topic.write and topic.read
    assert NOTHING in {topic.write for topic in perms.topics}
