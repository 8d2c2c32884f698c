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


def test_a_replay_only_attempt_starts_no_stage_outside_the_replayed_job():
    """`kiln replay --only scan`: its image.pushed reaches the attester's queue too; acked there,
    unhandled. The scanner runs it; the deployer's gate (replay_scope=False) always sees it."""
    from shared.events import ImagePushed

    def dispatcher_of(spec, handled, *, replay_scope=True):
        async def publish(envelope):
            pass

        async def park(*args):
            raise AssertionError("nothing is parked")

        return Dispatcher(
            spec=spec,
            handlers={ImagePushed: lambda event, ctx: handled.append(spec.service)},
            guard=RecordingGuard(),
            source="test",
            publish=publish,
            park=park,
            replay_scope=replay_scope,
        )

    pushed = ImagePushed(
        target="webhook", platform="linux/amd64", repository="127.0.0.1:5000/kiln/x", tag="b1",
        digest="sha256:" + "a" * 64, size_bytes=1,
    )  # fmt: skip
    original = Envelope.new(pushed, source="imager", build_id="b-1")
    only_scan = original.replayed(attempt=2, only="scan")
    handled: list[str] = []
    for spec in (t.stage_queue("attester", "images"), t.stage_queue("scanner", "images")):
        message = Message(only_scan.wire()[0])
        asyncio.run(dispatcher_of(spec, handled)(message))
        assert message.acked
    asyncio.run(dispatcher_of(t.DEPLOYER_GATE, handled, replay_scope=False)(Message(only_scan.wire()[0])))
    assert handled == ["scanner", "deployer"]
    whole = original.replayed(attempt=3)  # a replay --from scan: everything after it runs
    asyncio.run(dispatcher_of(t.stage_queue("attester", "images"), handled)(Message(whole.wire()[0])))
    assert handled[-1] == "attester"
