"""CancelWatch: a cancel stops the attempts up to the one it was sent for, not a later replay."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.bus.cancellation import CancelWatch
from shared.events import BuildCancelRequested, Envelope


@dataclass
class Message:
    body: bytes


def cancel(watch: CancelWatch, build_id: str, attempt: int, reason: str = "user") -> None:
    envelope = Envelope.new(BuildCancelRequested(reason=reason), source="gateway", build_id=build_id)
    envelope = envelope.model_copy(update={"attempt": attempt})
    asyncio.run(watch._on_message(Message(envelope.to_json())))


def test_a_cancel_stops_its_attempt_and_earlier_ones_not_a_replay():
    watch = CancelWatch()
    cancel(watch, "b1", attempt=1)
    assert watch.is_cancelled("b1", 1) and watch.reason("b1") == "user"
    assert not watch.is_cancelled("b1", 2)  # kiln replay of the cancelled build
    assert not watch.is_cancelled("b2", 1)
    cancel(watch, "b1", attempt=2, reason="again")
    assert watch.is_cancelled("b1", 2) and watch.reason("b1") == "again"
    cancel(watch, "b1", attempt=1, reason="late redelivery")
    assert watch.is_cancelled("b1", 2)  # an older cancel arriving late does not lower it


def test_an_invalid_cancel_message_is_ignored():
    watch = CancelWatch()
    asyncio.run(watch._on_message(Message(b"not an event")))
    assert not watch.is_cancelled("b1", 1)
