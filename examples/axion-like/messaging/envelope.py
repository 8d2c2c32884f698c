"""An envelope: topic, payload, id, time; JSON on the wire."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from core import jsonio


@dataclass(frozen=True)
class Envelope:
    topic: str
    payload: dict
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at: float = field(default_factory=time.time)


def encode(envelope: Envelope) -> bytes:
    return jsonio.dumps(
        {"topic": envelope.topic, "payload": envelope.payload, "id": envelope.id, "sent_at": envelope.sent_at}
    )


def decode(raw: bytes) -> Envelope:
    data = jsonio.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("topic"), str):
        raise ValueError("not an envelope: a JSON object with a topic is expected")
    return Envelope(data["topic"], dict(data.get("payload") or {}), str(data["id"]), float(data["sent_at"]))
