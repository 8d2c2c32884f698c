"""The event contract without I/O: round trips, validation, evolution, derived ids, tracing."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.events import CATALOGUE, Envelope, InvalidEvent, decode
from shared.events.build import BuildFinished, BuildRequested, Options, Source
from shared.events.compile import ImageRequested
from shared.events.trace import child_traceparent, trace_id
from tests.unit.samples import SAMPLES


def test_every_catalogue_type_has_a_sample():
    assert {type(s) for s in SAMPLES} == set(CATALOGUE)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.ce_type())
def test_round_trip(event):
    envelope = Envelope.new(event, source="test", build_id="b-1", package="demo")
    decoded = decode(envelope.to_json())
    assert decoded == envelope
    assert decoded.event() == event
    assert decoded.type == f"dev.kiln.{event.subject}.{event.predicate}.v1"


def test_routing_keys():
    request = ImageRequested(target="web", platform="linux/arm64", base_image="b", repository="r/x-arm")
    assert request.routing_key() == "image.requested.arm64"
    assert BuildRequested(package="p").routing_key() == "build.requested"


def test_amqp_headers_repeat_the_attributes():
    envelope = Envelope.new(BuildRequested(package="demo"), source="gateway", build_id="b-9")
    headers = envelope.amqp_headers()
    assert headers["cloudEvents_type"] == "dev.kiln.build.requested.v1"
    assert headers["cloudEvents_buildid"] == "b-9"
    assert headers["cloudEvents_source"] == "/kiln/gateway"
    assert "cloudEvents_data" not in headers


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "0.3"}', "unsupported specversion"),
        (b'{"specversion": "1.0", "type": "dev.kiln.build.requested.v1"}', "invalid envelope"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(body, reason):
    with pytest.raises(InvalidEvent, match=reason):
        decode(body)


def test_unknown_type_is_rejected():
    raw = json.loads(Envelope.new(BuildRequested(package="p"), source="t", build_id="b").to_json())
    raw["type"] = "dev.kiln.nothing.happened.v1"
    with pytest.raises(InvalidEvent, match="unknown event type"):
        decode(json.dumps(raw).encode())


def test_data_that_does_not_fit_its_type_is_rejected_naming_the_field():
    raw = json.loads(Envelope.new(BuildFinished(status="failed"), source="t", build_id="b").to_json())
    raw["data"]["status"] = "exploded"
    with pytest.raises(InvalidEvent, match="status"):
        decode(json.dumps(raw).encode())


def test_additive_evolution_unknown_fields_are_ignored():
    raw = json.loads(Envelope.new(BuildRequested(package="p"), source="t", build_id="b").to_json())
    raw["data"]["added_in_a_later_release"] = {"x": 1}
    raw["newextension"] = "kept"
    decoded = decode(json.dumps(raw).encode())
    assert decoded.event() == BuildRequested(package="p")


def test_events_are_frozen():
    event = BuildRequested(package="p")
    with pytest.raises(ValueError):
        event.package = "q"  # type: ignore[misc]


def test_derived_ids_are_deterministic_and_distinct():
    a = Envelope.derived_id("cause", "kiln.compiler.builds", 1)
    assert a == Envelope.derived_id("cause", "kiln.compiler.builds", 1)
    assert a != Envelope.derived_id("cause", "kiln.compiler.builds", 2)
    assert a != Envelope.derived_id("cause", "kiln.deployer.gate", 1)


def test_a_caused_event_keeps_trace_build_and_attempt():
    cause = Envelope.new(
        BuildRequested(package="demo", source=Source(ref="main"), options=Options()),
        source="gateway",
        build_id="b-7",
        package="demo",
    ).replayed()
    child = Envelope.new(BuildFinished(status="succeeded"), source="deployer", build_id="b-7", cause=cause)
    assert trace_id(child.traceparent) == trace_id(cause.traceparent)
    assert child.traceparent != cause.traceparent
    assert child.attempt == 2 and child.replayof == cause.replayof and child.package == "demo"


def test_replay_gets_a_new_id_and_points_at_the_original():
    original = Envelope.new(BuildRequested(package="p"), source="t", build_id="b")
    replay = original.replayed()
    assert replay.id != original.id
    assert replay.replayof == original.id
    assert replay.attempt == original.attempt + 1
    assert replay.data == original.data


def test_bad_traceparent_starts_a_new_trace():
    assert trace_id(child_traceparent("garbage")) is not None


def test_envelope_new_is_a_validated_model():
    """Envelope.new goes through pydantic's validating constructor (no writing of its internals):
    the result is indistinguishable from one pydantic built from the same values."""
    event = BuildRequested(package="demo", source=Source(repository="r", ref="refs/heads/main", commit="c0"))
    fast = Envelope.new(event, source="gateway", build_id="b1", package="demo")
    constructed = Envelope.model_construct(**{name: getattr(fast, name) for name in Envelope.model_fields})
    assert fast.__dict__ == constructed.__dict__
    assert fast.model_fields_set == constructed.model_fields_set
    assert fast.__pydantic_extra__ == constructed.__pydantic_extra__ == {}
    validated = Envelope.model_validate(fast.model_dump())
    assert validated.model_dump() == fast.model_dump()
    assert fast.event() is event
    body, _ = fast.wire()
    assert decode(body) == fast
    assert json.loads(body) == json.loads(fast.to_json())
    assert fast.replayed().event() == event


def test_envelope_new_rejects_a_bad_build_id():
    with pytest.raises(ValidationError):
        Envelope.new(BuildRequested(package="demo"), source="gateway", build_id="not a build id!")
