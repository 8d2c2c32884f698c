"""shared/bus/worker.py: what a Worker starts, in which order (the broker side is integration's)."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus import MemoryIdempotencyGuard
from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.worker import Consumer, Subscription, Worker
from shared.events import BuildRequested, ImagePushed


class RecordingBus:
    """Records what a worker asks of its bus."""

    def __init__(self):
        self.calls = []

    async def subscribe_transient(self, purpose, keys, on_message, **options):
        self.calls.append(("transient", purpose))

    async def consume(self, spec, handlers, *, guard=None, give_up=None, replay_scope=True):
        self.calls.append(("consume", spec.name, tuple(handlers), guard, tuple(give_up or {})))


def handle(_event, _ctx):
    return None


def test_start_watches_cancels_then_hooks_then_consumes_with_the_guard():
    guard = MemoryIdempotencyGuard()
    order = []
    worker = Worker(
        source="scanner",
        settings=None,
        consumers=[
            Consumer(t.SCANNER_IMAGES, {ImagePushed: handle}, give_up={ImagePushed: handle}),
            Consumer(t.REPORTER_CDEVENTS, lambda bus: {BuildRequested: handle}, use_guard=False),
            Subscription("live", ["#"], handle),
        ],
        guard=guard,
        cancel=CancelWatch(),
        on_start=[lambda bus: order.append(("hook", list(bus.calls)))],
        on_stop=[lambda: order.append("stopped")],
    )
    bus = RecordingBus()
    asyncio.run(worker.start(bus))
    assert order == [("hook", [("transient", "cancel")])]
    assert bus.calls[1:] == [
        ("consume", t.SCANNER_IMAGES.name, (ImagePushed,), guard, (ImagePushed,)),
        ("consume", t.REPORTER_CDEVENTS.name, (BuildRequested,), None, ()),
        ("transient", "live"),
    ]
    asyncio.run(worker.close())
    assert order[-1] == "stopped"


def test_a_consumer_that_waits_starts_in_the_background_and_tests_reach_tables_by_queue():
    async def scenario():
        lease = asyncio.Event()
        worker = Worker(
            source="gateway",
            settings=None,
            consumers=[Consumer(t.GATEWAY_SUBSCRIPTIONS, {ImagePushed: handle}, wait_for=lease.wait)],
        )
        bus = RecordingBus()
        await worker.start(bus)
        assert bus.calls == []  # not before the lease is held
        lease.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [c[1] for c in bus.calls] == [t.GATEWAY_SUBSCRIPTIONS.name]
        await worker.close()
        return worker

    worker = asyncio.run(scenario())
    assert worker.handlers(t.GATEWAY_SUBSCRIPTIONS) == {ImagePushed: handle}
    with pytest.raises(KeyError):
        worker.handlers(t.SCANNER_IMAGES)
