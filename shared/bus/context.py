"""What a handler receives beside its event: the envelope, and a way to emit follow-up events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.events import Envelope, Event

PublishFn = Callable[[Envelope], Awaitable[None]]


@dataclass
class EventContext:
    """Passed to every handler. `emit` works from async handlers and from sync ones in threads."""

    envelope: Envelope
    consumer: str
    source: str
    _publish: PublishFn
    _loop: asyncio.AbstractEventLoop
    _emitted: int = field(default=0)
    # False only for an event's first delivery that is not a retry or a replay: then no earlier
    # attempt can have left work behind, and a handler may skip its recovery lookups (the imager's
    # "is this build's image already in the registry?"), which sit on the stage hand-off path.
    maybe_handled_before: bool = True

    @property
    def build_id(self) -> str:
        return self.envelope.buildid

    @property
    def package(self) -> str:
        return self.envelope.package

    def envelope_for(self, event: Event) -> Envelope:
        """The follow-up envelope, its id derived from the cause so redelivery re-emits the same id."""
        self._emitted += 1
        return Envelope.new(
            event,
            source=self.source,
            build_id=self.envelope.buildid,
            cause=self.envelope,
            event_id=Envelope.derived_id(self.envelope.id, self.consumer, self._emitted),
        )

    async def emit_async(self, event: Event) -> Envelope:
        envelope = self.envelope_for(event)
        await self._publish(envelope)
        return envelope

    def emit(self, event: Event) -> Envelope:
        """Publish with confirm and wait for it. Call from a sync handler running in a worker thread."""
        envelope = self.envelope_for(event)
        future = asyncio.run_coroutine_threadsafe(self._publish(envelope), self._loop)
        future.result(timeout=60)
        return envelope
