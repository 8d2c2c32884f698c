"""CDEvents go on kiln.cdevents as CloudEvents 1.0 in the structured content mode: the attributes
mirror the CDEvent's context, the CDEvent is `data` and still validates against v0.5.1."""

from __future__ import annotations

import pytest

from services.reporter.cdevents import translate, validate
from services.reporter.cdevents.cloudevents import as_cloudevent, cdevent_of
from shared.events import BuildRequested, Envelope


def test_a_cdevent_as_a_structured_cloudevent():
    envelope = Envelope.new(BuildRequested(package="demo"), source="/kiln/gateway", build_id="b-1")
    (cdevent,) = translate(envelope, build_url="http://kiln.test/builds/b-1")
    cloudevent = as_cloudevent(cdevent)
    context = cdevent["context"]
    assert cloudevent["specversion"] == "1.0"
    assert (cloudevent["id"], cloudevent["source"], cloudevent["type"], cloudevent["time"]) == (
        context["id"],
        context["source"],
        context["type"],
        context["timestamp"],
    )
    assert cloudevent["datacontenttype"] == "application/json"
    validate(cdevent_of(cloudevent))


def test_what_is_not_a_structured_cloudevent_is_refused():
    with pytest.raises(ValueError, match="structured CloudEvent"):
        cdevent_of({"context": {}, "subject": {}})
