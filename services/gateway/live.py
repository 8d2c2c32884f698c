"""Fan-out of every event this process sees to the live views (SSE streams, dashboard).

Fed by one transient queue bound to `#` (`bus.subscribe_transient`); each listener has its own
bounded asyncio queue and a filter. One AMQP queue with one consumer keeps the broker's order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import lru_cache

from aio_pika.abc import AbstractIncomingMessage

from shared.events import Envelope, InvalidEvent, decode

log = logging.getLogger("kiln.gateway.live")
LISTENER_BACKLOG = 1000


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic semantics: `*` is exactly one word, `#` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


class Listener:
    def __init__(self, accept: Callable[[Envelope, str], bool]):
        self.accept = accept
        self.queue: asyncio.Queue[tuple[Envelope, str] | None] = asyncio.Queue(LISTENER_BACKLOG)
        self.overflowed = False


class LiveHub:
    def __init__(self) -> None:
        self._listeners: set[Listener] = set()

    def listen(
        self, *, build_id: str | None = None, pattern: str = "#", package: str | None = None
    ) -> Listener:
        def accept(envelope: Envelope, key: str) -> bool:
            return (
                (build_id is None or envelope.buildid == build_id)
                and (package is None or envelope.package == package)
                and topic_matches(pattern, key)
            )

        listener = Listener(accept)
        self._listeners.add(listener)
        return listener

    def forget(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def close(self) -> None:
        """Shutdown: end every open stream."""
        for listener in list(self._listeners):
            listener.overflowed = True  # ends the stream's loop even if its queue is full
            self.forget(listener)
            if not listener.queue.full():
                listener.queue.put_nowait(None)

    def publish_local(self, envelope: Envelope, routing_key: str) -> None:
        for listener in list(self._listeners):
            if not listener.accept(envelope, routing_key):
                continue
            try:
                listener.queue.put_nowait((envelope, routing_key))
            except asyncio.QueueFull:
                # A stalled browser must not grow memory without bound: close its stream instead.
                listener.overflowed = True
                self.forget(listener)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = decode(message.body)
        except InvalidEvent as exc:
            log.debug("live view skips an invalid message: %s", exc)
            return
        self.publish_local(envelope, message.routing_key or "")
