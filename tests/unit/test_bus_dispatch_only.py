"""shared.bus.dispatch.Only: a handler for some events of its type; the others are acked before
the idempotency guard (no database round trip for events nobody records)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shared.bus import topology as t
from shared.bus.dispatch import Dispatcher, Only
from shared.events import Envelope, StageFinished


class RecordingGuard:
    blocking = False  # in memory: the dispatcher calls it on the loop

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def seen(self, consumer: str, event_id: str) -> bool:
        self.calls.append(("seen", event_id))
        return False

    def mark(self, consumer: str, event_id: str) -> None:
        self.calls.append(("mark", event_id))


@dataclass
class Message:
    body: bytes
    headers: dict = field(default_factory=dict)
    redelivered: bool = False
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


def test_events_the_filter_refuses_are_acked_without_the_guard_or_the_handler():
    handled: list[str] = []
    guard = RecordingGuard()

    async def publish(envelope):
        pass

    async def park(*args):
        raise AssertionError("nothing is parked")

    dispatcher = Dispatcher(
        spec=t.DEPLOYER_GATE,
        handlers={
            StageFinished: Only(
                lambda event, ctx: handled.append(event.stage), accepts=lambda e: e.stage == "scan"
            )
        },
        guard=guard,
        source="test",
        publish=publish,
        park=park,
    )

    def message(stage: str) -> tuple[Message, str]:
        envelope = Envelope.new(StageFinished(stage=stage, status="succeeded"), source="t", build_id="b-1")
        return Message(envelope.wire()[0]), envelope.id

    other, _ = message("compile")
    scan, scan_id = message("scan")
    asyncio.run(dispatcher(other))
    asyncio.run(dispatcher(scan))
    assert other.acked and scan.acked
    assert handled == ["scan"]
    assert guard.calls == [("seen", scan_id), ("mark", scan_id)]
