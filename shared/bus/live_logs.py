"""Live log lines of running stages, shipped to `kiln.logs` without ever holding a stage up.

A stage writes lines into a `LogStream` (from its worker thread). Writing only redacts the lines
and appends them to a bounded buffer. A task on the bus's event loop ships every buffer each
250 ms, or as soon as one holds 50 lines, as transient, unconfirmed messages (`LogBatch`).

Lines are a view, not a record (the record is the stage event's `log_tail`), so every failure
here costs lines, never the stage: broker down, channel closed, nobody bound — the batch is
dropped and counted, and the next batch that gets through starts with "[n lines dropped]". A
buffer that fills faster than it ships keeps the newest lines the same way. The only wait a stage
ever sees is at the end of a stage run (`close`), at most CLOSE_WAIT_S, so its last lines go out
before its `stage.finished`.

Secrets: every line goes through the same redaction as log records and stage log tails
(`shared.logging.REDACT`: registered secret values, `user:pass@` in URLs, bearer tokens, PEM
blocks), plus the secrets the service hands the shipper; a private key printed over several
writes is suppressed from its BEGIN line to its END line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import aio_pika

from shared.bus import topology as t
from shared.events.logs import LOG_LINES_TYPE, LogBatch, LogLines
from shared.logging import REDACT, Redactor

log = logging.getLogger("kiln.bus.logs")

FLUSH_INTERVAL_S = 0.25
FLUSH_AT_LINES = 50
BUFFER_LINES = 2000  # per stage run; beyond it the oldest lines are dropped
BATCH_LINES = 500  # per message
MAX_LINE_CHARS = 2000
CLOSE_WAIT_S = 0.5
PUBLISH_TIMEOUT_S = 2.0
REOPEN_AFTER_S = 5.0  # after a failed attempt to open the log channel

_BEGIN_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_END_KEY = re.compile(r"-----END [A-Z ]*PRIVATE KEY-----")
KEY_REDACTED = "[PRIVATE KEY REDACTED]"

LineSink = Callable[[str], None]


def discard(_text: str) -> None:
    """A LineSink for code run without a shipper (unit tests, the standalone CLIs)."""


class LogStream:
    """The lines of one stage run (build, stage, and the image's target/platform). Thread-safe.

    Call it (it is a LineSink) with any text: several lines at once are split. Use as a context
    manager, or call `close()` when the stage run ends."""

    def __init__(
        self,
        shipper: LogShipper,
        *,
        build_id: str,
        package: str,
        stage: str,
        target: str | None,
        platform: str | None,
    ):
        self.build_id, self.package, self.stage = build_id, package, stage
        self.target, self.platform = target, platform
        self.routing_key = t.log_routing_key(stage, platform)
        self.seq = 0
        self._shipper = shipper
        self._lock = threading.Lock()
        self._pending: deque[str] = deque(maxlen=BUFFER_LINES)
        self._dropped = 0
        self._in_private_key = False
        self._wake_asked = False
        self._closed = False
        self._shipped = threading.Event()

    def __call__(self, text: str) -> None:
        self.write(text)

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def write(self, text: str) -> None:
        with self._lock:
            if self._closed:
                return
            for line in self._clean(text):
                if len(self._pending) == BUFFER_LINES:
                    self._dropped += 1  # the deque drops the oldest line itself
                self._pending.append(line)
            wake = len(self._pending) >= FLUSH_AT_LINES and not self._wake_asked
            self._wake_asked = self._wake_asked or wake
        if wake:
            self._shipper.wake()

    def _clean(self, text: str) -> list[str]:
        """Redacted lines (a whole PEM block within one write goes first), each of bounded length."""
        lines = []
        for line in self._shipper.redact(text).splitlines():
            if self._in_private_key:
                self._in_private_key = not _END_KEY.search(line)
                continue
            if _BEGIN_KEY.search(line):  # a key whose END comes in a later write
                self._in_private_key = True
                lines.append(KEY_REDACTED)
                continue
            lines.append(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " … (truncated)")
        return lines

    def close(self) -> None:
        """No more lines; wait (at most CLOSE_WAIT_S) until what is buffered has been shipped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._shipper.running:
            self._shipper.wake()
            self._shipped.wait(CLOSE_WAIT_S)
        else:
            self._shipper.forget(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self) -> tuple[list[str], int]:
        """(lines to ship, lines dropped before them); empties the buffer. Called by the shipper."""
        with self._lock:
            lines, dropped = list(self._pending), self._dropped
            self._pending.clear()
            self._dropped = 0
            self._wake_asked = False
        return lines, dropped

    def lost(self, count: int) -> None:
        """`count` lines did not get through; the next batch says so."""
        with self._lock:
            self._dropped += count

    def mark_shipped(self) -> None:
        self._shipped.set()


class LogShipper:
    """One per process: the streams of the stage runs in hand, and the task that ships them."""

    def __init__(self, source: str, *, secrets: Iterable[str] = ()):
        self.source = source
        self._redactor = Redactor(secrets)
        self._streams: list[LogStream] = []
        self._lock = threading.Lock()
        self._bus: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._channel: Any = None
        self._exchange: Any = None
        self._reopen_at = 0.0
        self._failing = False
        self.batches_sent = 0
        self.lines_lost = 0

    # -- for stages (any thread) ---------------------------------------------------------------

    def stream(
        self,
        build_id: str,
        *,
        stage: str,
        package: str = "",
        target: str | None = None,
        platform: str | None = None,
    ) -> LogStream:
        stream = LogStream(
            self, build_id=build_id, package=package, stage=stage, target=target, platform=platform
        )
        with self._lock:
            self._streams.append(stream)
        return stream

    def redact(self, text: str) -> str:
        return self._redactor(REDACT(text))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process ends, lines are moot
            loop.call_soon_threadsafe(wake.set)

    def forget(self, stream: LogStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
        stream.mark_shipped()

    # -- on the bus's loop ------------------------------------------------------------------------

    async def start(self, bus: Any) -> None:
        """Ship on `bus`'s connection (a channel of its own, no confirms) until `stop`."""
        self._bus = bus
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"kiln-{self.source}-log-shipper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.ship()  # the last lines, if the broker takes them
        for stream in list(self._streams):
            self.forget(stream)

    async def _run(self) -> None:
        """Until the bus is closed: the jobs in hand when it began to stop still ship their lines."""
        assert self._wake is not None
        while not (self._bus.stopping and not self._bus.connected):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                await self.ship()
            except Exception:  # shipping lines must never end: the next round tries again
                log.exception("shipping live log lines failed")
        for stream in list(self._streams):
            self.forget(stream)

    async def ship(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            closing = stream.closed  # read first: a closed stream takes no more lines
            lines, dropped = stream.take()
            if lines or dropped:
                await self._send(stream, lines, dropped)
            if closing:
                self.forget(stream)

    async def _send(self, stream: LogStream, lines: list[str], dropped: int) -> None:
        if dropped:
            lines = [f"[{dropped} lines dropped]", *lines]
        for start in range(0, len(lines), BATCH_LINES):
            part = lines[start : start + BATCH_LINES]
            first = start == 0
            stream.seq += 1
            data = LogLines(
                stage=stream.stage,
                target=stream.target,
                platform=stream.platform,
                seq=stream.seq,
                lines=tuple(part),
                dropped=dropped if first else 0,
            )
            batch = LogBatch.new(data, source=self.source, build_id=stream.build_id, package=stream.package)
            if await self._publish(batch, stream.routing_key):
                self.batches_sent += 1
                continue
            real = len(part) - (1 if first and dropped else 0)
            stream.lost(real + (dropped if first else 0))
            self.lines_lost += real

    async def _publish(self, batch: LogBatch, routing_key: str) -> bool:
        exchange = await self._exchange_ready()
        if exchange is None:
            return False
        message = aio_pika.Message(
            body=batch.to_json(),
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            message_id=batch.id,
            type=LOG_LINES_TYPE,
            app_id=batch.source,
            headers={"cloudEvents_type": LOG_LINES_TYPE, "cloudEvents_buildid": batch.buildid},
        )
        try:
            # aiormq keeps a publish cancel-safe: on timeout the frames went out whole, or not at all.
            await exchange.publish(
                message, routing_key=routing_key, mandatory=False, timeout=PUBLISH_TIMEOUT_S
            )
        except Exception as exc:
            self._failed(exc)
            return False
        if self._failing:
            log.info("live log lines are shipping again")
            self._failing = False
        return True

    async def _exchange_ready(self) -> Any:
        if self._channel is not None and not self._channel.is_closed:
            return self._exchange
        if self._bus is None or not self._bus.connected or time.monotonic() < self._reopen_at:
            return None
        self._reopen_at = time.monotonic() + REOPEN_AFTER_S
        try:
            self._channel = await asyncio.wait_for(self._bus.open_channel(), PUBLISH_TIMEOUT_S)
            self._exchange = await self._channel.get_exchange(t.LOGS_EXCHANGE, ensure=False)
        except Exception as exc:
            self._channel = None
            self._failed(exc)
            return None
        return self._exchange

    def _failed(self, exc: BaseException) -> None:
        """One warning per outage, not one per batch."""
        if not self._failing:
            log.warning("live log lines are being dropped: %s", exc or type(exc).__name__)
            self._failing = True
