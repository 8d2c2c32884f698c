"""Fan-out of every event and live log batch this process sees to the live views (SSE, dashboard).

Fed by two transient queues, each bound to `#`: one on `kiln.events`, one on `kiln.logs`
(`bus.subscribe_transient`). Each listener has its own bounded asyncio queue and a filter. One
AMQP queue with one consumer per exchange keeps the broker's order.

Live log lines are not stored anywhere, so the hub keeps the most recent ones of builds still
running (`RecentLogs`): a page opened in the middle of a compile shows what came before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import lru_cache

from aio_pika.abc import AbstractIncomingMessage

from shared.events import Envelope, InvalidEvent, decode
from shared.events.logs import LogBatch

log = logging.getLogger("kiln.gateway.live")
LISTENER_BACKLOG = 1000
# Recent live log lines kept per running build, and for how many builds at most (least recently
# active dropped first): bounded memory whatever the builds print.
RECENT_LINES_PER_BUILD = 1000
RECENT_BUILDS = 32


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


class RecentLogs:
    """The last RECENT_LINES_PER_BUILD live log lines of the RECENT_BUILDS most recently active builds."""

    def __init__(self) -> None:
        self._builds: OrderedDict[str, deque[tuple[LogBatch, str]]] = OrderedDict()
        self._lines: dict[str, int] = {}

    def add(self, batch: LogBatch, routing_key: str) -> None:
        build = batch.buildid
        batches = self._builds.setdefault(build, deque())
        self._builds.move_to_end(build)
        batches.append((batch, routing_key))
        self._lines[build] = self._lines.get(build, 0) + len(batch.data.lines)
        while self._lines[build] > RECENT_LINES_PER_BUILD and len(batches) > 1:
            self._lines[build] -= len(batches.popleft()[0].data.lines)
        while len(self._builds) > RECENT_BUILDS:
            gone, _ = self._builds.popitem(last=False)
            self._lines.pop(gone, None)

    def of(self, build_id: str) -> list[tuple[LogBatch, str]]:
        return list(self._builds.get(build_id, ()))

    def finished(self, build_id: str) -> None:
        self._builds.pop(build_id, None)
        self._lines.pop(build_id, None)


class Listener:
    def __init__(self, accept: Callable[[Envelope, str], bool], log_build: str | None = None):
        self.accept = accept
        self.log_build = log_build  # live log batches of this build go to this listener too
        self.queue: asyncio.Queue[tuple[Envelope | LogBatch, str] | None] = asyncio.Queue(LISTENER_BACKLOG)
        self.overflowed = False


class LiveHub:
    def __init__(self) -> None:
        self._listeners: set[Listener] = set()
        self.recent_logs = RecentLogs()

    def listen(
        self,
        *,
        build_id: str | None = None,
        pattern: str = "#",
        package: str | None = None,
        logs: bool = False,
    ) -> Listener:
        """Events matching the filters; with `logs` (and a build), that build's live log batches too."""

        def accept(envelope: Envelope, key: str) -> bool:
            return (
                (build_id is None or envelope.buildid == build_id)
                and (package is None or envelope.package == package)
                and topic_matches(pattern, key)
            )

        listener = Listener(accept, log_build=build_id if logs else None)
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
        if routing_key == "build.finished":
            self.recent_logs.finished(envelope.buildid)
        for listener in list(self._listeners):
            if listener.accept(envelope, routing_key):
                self._put(listener, (envelope, routing_key))

    def publish_log_local(self, batch: LogBatch, routing_key: str) -> None:
        self.recent_logs.add(batch, routing_key)
        for listener in list(self._listeners):
            if listener.log_build == batch.buildid:
                self._put(listener, (batch, routing_key))

    def _put(self, listener: Listener, item: tuple[Envelope | LogBatch, str]) -> None:
        try:
            listener.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A stalled browser must not grow memory without bound: close its stream instead.
            listener.overflowed = True
            self.forget(listener)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        if not self._listeners:  # nobody watching: every event passes here, skip decoding it
            return
        try:
            envelope = decode(message.body)
        except InvalidEvent as exc:
            log.debug("live view skips an invalid message: %s", exc)
            return
        self.publish_local(envelope, message.routing_key or "")

    async def on_log_message(self, message: AbstractIncomingMessage) -> None:
        try:
            batch = LogBatch.from_json(message.body)
        except InvalidEvent as exc:
            log.debug("live view skips an invalid log batch: %s", exc)
            return
        self.publish_log_local(batch, message.routing_key or "")
