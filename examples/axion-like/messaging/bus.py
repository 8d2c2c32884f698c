"""Topic routing as AMQP topic exchanges do it: `*` is one word, `#` zero or more."""

from __future__ import annotations

import threading
from collections.abc import Callable

from messaging.envelope import Envelope, decode, encode


def matches(pattern: str, topic: str) -> bool:
    return _match(pattern.split("."), topic.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


class Bus:
    """Every envelope goes through its wire form, so what a subscriber gets is what a broker would carry."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Callable[[Envelope], object]]] = []
        self._lock = threading.Lock()
        self.published = 0

    def subscribe(self, pattern: str, handler: Callable[[Envelope], object]) -> None:
        with self._lock:
            self._subscribers.append((pattern, handler))

    def publish(self, topic: str, payload: dict) -> int:
        """Delivers to every matching subscriber; returns how many got it."""
        wire = encode(Envelope(topic, payload))
        with self._lock:
            self.published += 1
            targets = [h for p, h in self._subscribers if matches(p, topic)]
        for handler in targets:
            handler(decode(wire))
        return len(targets)
