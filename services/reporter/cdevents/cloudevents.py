"""CDEvents are CloudEvents (CDEvents spec, "CloudEvents Binding and Transport"): each CDEvent goes
on `kiln.cdevents` as a CloudEvent in the AMQP structured content mode — the message body is the
CloudEvent JSON (`application/cloudevents+json`), its `data` the whole CDEvent — so a consumer
with any CloudEvents SDK reads it, and one that knows CDEvents reads `data`.

The CloudEvent's attributes mirror the CDEvent's context, as the binding requires: `id`,
`source`, `type` and `time` are the context's `id`, `source`, `type` and `timestamp`.
"""

from __future__ import annotations

from typing import Any

CLOUDEVENTS_SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


def as_cloudevent(cdevent: dict[str, Any]) -> dict[str, Any]:
    context = cdevent["context"]
    return {
        "specversion": CLOUDEVENTS_SPEC_VERSION,
        "id": context["id"],
        "source": context["source"],
        "type": context["type"],
        "time": context["timestamp"],
        "datacontenttype": "application/json",
        "data": cdevent,
    }


def cdevent_of(cloudevent: dict[str, Any]) -> dict[str, Any]:
    """The CDEvent a structured CloudEvent carries (what a subscriber validates)."""
    if cloudevent.get("specversion") != CLOUDEVENTS_SPEC_VERSION or "data" not in cloudevent:
        raise ValueError("not a structured CloudEvent 1.0 with data")
    return cloudevent["data"]
