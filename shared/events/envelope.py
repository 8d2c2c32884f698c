"""The CloudEvents 1.0 envelope, structured JSON mode, with Kiln's extensions.

Extensions: `buildid`, `package`, `attempt`, `traceparent` and, on replays, `replayof` (and
`replayonly`, the stage a `kiln replay --only` reruns alone).
CloudEvents extension names are lower-case alphanumerics, hence no underscores.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError

from shared.events.base import Event
from shared.events.formats import describe_format
from shared.events.registry import model_for_type
from shared.events.trace import child_traceparent, new_traceparent
from shared.naming import NAME_PATTERN

CONTENT_TYPE = "application/cloudevents+json"
HEADER_PREFIX = "cloudEvents_"
# Fixed namespace for ids derived from a cause: a redelivered handler re-derives the same ids,
# so everything downstream (event_log, idempotency guards) sees one event, not two.
_DERIVED_ID_NAMESPACE = uuid.UUID("6f1d7a52-3c1e-4d8e-9a55-2b4f0c6e9d11")


_WIRE_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "buildid",
    "package",
    "attempt",
    "traceparent",
    "replayof",
    "replayonly",
)


# Build ids name rows, queues' idempotency keys and log streams: a uuid in practice.
BuildId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
PackageName = Annotated[str, StringConstraints(pattern=rf"^$|{NAME_PATTERN}", max_length=63)]
StageName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,29}$")]


class InvalidEvent(Exception):
    """A message that is not a valid Kiln event. Permanent: retrying cannot fix it.

    `envelope` is set when the envelope was valid and only its data was not: the consumer then
    still knows which build it belonged to, and can end that build with the reason."""

    def __init__(self, message: str, envelope: Envelope | None = None):
        super().__init__(message)
        self.envelope = envelope


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    buildid: BuildId
    package: PackageName = ""
    attempt: int = 1
    traceparent: str = Field(default_factory=new_traceparent)
    replayof: str | None = None
    # `kiln replay --only <stage>`: what this attempt causes starts no stage outside that
    # stage's job (shared.stages.in_replay_scope); the deployer's gate ends the attempt.
    replayonly: StageName | None = None
    # The typed data, validated once and kept: routing and dispatch both need it.
    _event: Event | None = PrivateAttr(None)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        event: Event,
        *,
        source: str,
        build_id: str,
        package: str = "",
        cause: Envelope | None = None,
        event_id: str | None = None,
    ) -> Envelope:
        """Wrap `event`; with a `cause`, inherit its attempt, replay origin and trace."""
        # Built through pydantic's own validating path (model_validate), not by writing its
        # internals: pydantic-core checks these thirteen values in ~2 µs, under 1% of what an
        # event costs on the bus (bench/bus, docs/performance.md). model_construct is slower
        # still: its per-field default handling runs in Python.
        values = {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": source if source.startswith("/") else f"/kiln/{source}",
            "type": event.ce_type(),
            "subject": build_id,
            "time": datetime.now(UTC),
            "datacontenttype": "application/json",
            "data": event.model_dump(mode="json"),
            "buildid": build_id,
            "package": package or (cause.package if cause else ""),
            "attempt": cause.attempt if cause else 1,
            "traceparent": child_traceparent(cause.traceparent if cause else None),
            "replayof": cause.replayof if cause else None,
            "replayonly": cause.replayonly if cause else None,
        }
        envelope = cls.model_validate(values)
        envelope._event = event  # the typed data is already known: event() need not re-validate it
        return envelope

    def replayed(self, attempt: int | None = None, only: str | None = None) -> Envelope:
        """A copy to republish for a replay: new id, `replayof` set, and the attempt it starts
        (`attempt`: the build's next one, which the gateway reads from the log; else this + 1);
        `only`: that attempt reruns this stage's job and nothing after it."""
        return self.model_copy(
            update={
                "id": str(uuid.uuid4()),
                "time": datetime.now(UTC),
                "replayof": self.id,
                "attempt": attempt if attempt is not None else self.attempt + 1,
                "traceparent": child_traceparent(self.traceparent),
                "replayonly": only,
            }
        )

    @staticmethod
    def derived_id(cause_id: str, consumer: str, index: int) -> str:
        return str(uuid.uuid5(_DERIVED_ID_NAMESPACE, f"{cause_id}/{consumer}/{index}"))

    # -- reading ---------------------------------------------------------------------------

    def model(self) -> type[Event]:
        model = model_for_type(self.type)
        if model is None:
            raise InvalidEvent(f"unknown event type {self.type!r}")
        return model

    def event(self) -> Event:
        """The typed data. Raises InvalidEvent with the field errors when data does not fit."""
        # Read through __pydantic_private__, not `self._event`: pydantic routes private attribute
        # access through a Python __getattr__, and dispatch asks for the event several times.
        private = self.__pydantic_private__
        event = private.get("_event")
        if event is None:
            try:
                event = private["_event"] = self.model().model_validate(self.data)
            except ValidationError as exc:
                raise InvalidEvent(f"{self.type}: {describe_invalid(exc)}", envelope=self) from None
        return event

    def routing_key(self) -> str:
        return self.event().routing_key()

    # -- wire format -------------------------------------------------------------------------

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    def amqp_headers(self) -> dict[str, str | int]:
        """The attributes repeated as `cloudEvents_<name>` so subscribers can filter unparsed."""
        attributes = self.model_dump(mode="json", exclude={"data"}, exclude_none=True)
        return {f"{HEADER_PREFIX}{name}": value for name, value in attributes.items()}

    def wire(self) -> tuple[bytes, dict[str, str | int]]:
        """Body and headers for publishing. Built by hand, not by model_dump: `data` is already
        JSON-ready (Envelope.new dumped it) and re-walking it is the bus's largest own cost."""
        attributes: dict[str, Any] = {
            name: getattr(self, name) for name in _WIRE_ATTRIBUTES if getattr(self, name) is not None
        }
        attributes["time"] = self.time.isoformat().replace("+00:00", "Z")
        attributes.update(self.__pydantic_extra__ or {})
        headers = {f"{HEADER_PREFIX}{name}": value for name, value in attributes.items()}
        body = orjson.dumps({**attributes, "data": self.data})
        return body, headers


def decode(body: bytes) -> Envelope:
    """Parse and validate a structured-mode CloudEvent; every failure is an InvalidEvent."""
    try:  # the fast path: one pass in pydantic-core for the well-formed case
        envelope = Envelope.model_validate_json(body)
    except ValueError:
        envelope = None
    if envelope is not None and envelope.specversion == "1.0":
        envelope.event()
        return envelope
    return _diagnose(body)


def _diagnose(body: bytes) -> Envelope:
    """The slow path for a message that failed the fast one: find the exact reason."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("body is not a JSON object")
    if raw.get("specversion") != "1.0":
        raise InvalidEvent(f"unsupported specversion {raw.get('specversion')!r} (expected '1.0')")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid envelope: {describe_invalid(exc)}") from None
    envelope.event()  # validates data against the model for its type
    return envelope


def describe_invalid(exc: ValidationError) -> str:
    """The first five field errors of a model, each naming the field (and, for a format, the
    value and the format it missed)."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "string_pattern_mismatch":  # name the value and the format it missed
            parts.append(f"{where}: {str(err['input'])[:120]!r} {describe_format(err['ctx']['pattern'])}")
        else:
            parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
