"""The consume policy, declared once: decode, dedupe, run the handler, ack, retry or dead-letter.

Contract: a message is acked only after its handler returned, or after it was safely parked in
its retry or dead-letter queue (both publishes are confirmed first). So a consumer killed at
any point leaves the message in the queue, and RabbitMQ redelivers it to another consumer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.bus import topology as t
from shared.bus.context import EventContext
from shared.bus.errors import (
    ERROR_HEADER,
    ERROR_KIND_HEADER,
    RETRIES_HEADER,
    PermanentError,
)
from shared.bus.idempotency import IdempotencyGuard
from shared.events import Envelope, Event, InvalidEvent, decode
from shared.stages import in_replay_scope, stages_started_by

log = logging.getLogger("kiln.bus")

Handler = Callable[[Any, EventContext], Awaitable[None] | None]
HandlerTable = Mapping[type[Event], Handler]
# Called with (event, ctx, reason) when an event of that type is dead-lettered after it was read:
# the service reports the failure as an event (image.failed, build.finished failed), so the build
# it belongs to ends with the reason instead of waiting forever for a stage that gave up.
# `event` is None when the envelope was valid but its data was refused (a forged or malformed
# field): the build is known, the event's own fields cannot be trusted.
GiveUp = Callable[[Any, EventContext, str], Awaitable[None] | None]
GiveUpTable = Mapping[type[Event], GiveUp]


@dataclass(frozen=True)
class Only:
    """A handler for only some events of its type: `accepts(event)` (pure, cheap) says which.

    A queue bound to a broad key (the deployer's gate on every `stage.finished`) sees many
    events it has nothing to record for. The dispatcher acks those at once, before the
    idempotency guard: no database read or write, no thread hop. Called directly (unit tests),
    it applies the same filter."""

    handler: Handler
    accepts: Callable[[Any], bool]

    def __call__(self, event: Any, ctx: EventContext) -> Awaitable[None] | None:
        return self.handler(event, ctx) if self.accepts(event) else None


class Dispatcher:
    """Runs one queue's messages through its handler table."""

    def __init__(
        self,
        *,
        spec: t.QueueSpec,
        handlers: HandlerTable,
        guard: IdempotencyGuard,
        source: str,
        publish: Callable[[Envelope], Awaitable[None]],
        park: Callable[[str, AbstractIncomingMessage, dict[str, Any], float | None], Awaitable[None]],
        retry_base_delay_s: float | None = None,
        give_up: GiveUpTable | None = None,
        replay_scope: bool = True,
    ):
        self.retry_base_delay_s = retry_base_delay_s
        self.give_up = dict(give_up or {})
        self.spec = spec
        self.handlers = {model: _unwrap(handler) for model, handler in handlers.items()}
        self._accepts = {m: h.accepts for m, h in handlers.items() if isinstance(h, Only)}
        # Decided once per handler, not per message: does it run on the loop or in a thread?
        self._on_loop = {model: _is_async(handler) for model, handler in self.handlers.items()}
        self.guard = guard
        self._guard_blocks = getattr(guard, "blocking", True)
        self.source = source
        self._publish = publish
        self._park = park
        # `kiln replay --only`: events that would start a stage outside the replayed job are
        # acked unhandled. Off for the deployer's gate, which ends such an attempt itself.
        self._replay_scope = replay_scope

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._handle(message)
        except Exception:  # the loop must survive anything, even a failing ack
            log.exception("unexpected failure handling a message on %s", self.spec.name)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = decode(message.body)
        except InvalidEvent as exc:
            reason = f"invalid event: {exc}"
            if exc.envelope is not None:  # a known build: end it with the reason, not silently
                await self._give_up(exc.envelope, reason)
            await self._dead_letter(message, reason, "invalid")
            return
        model = envelope.model()
        handler = self.handlers.get(model)
        if handler is None:  # bound broadly (e.g. `#`), but not ours to handle
            await message.ack()
            return
        headers = message.headers or {}
        deliveries = int(headers.get("x-delivery-count", 0) or 0)
        if deliveries >= t.DELIVERY_LIMIT - 1:
            reason = f"delivered {deliveries + 1} times without an ack: its consumers kept dying on it"
            await self._give_up(envelope, reason)
            await self._dead_letter(message, reason, "poison")
            return
        if self._replay_scope and envelope.replayonly and self._out_of_replay_scope(envelope):
            log.info(
                "%s: attempt %d of build %s reruns only %s; %s starts none of it here",
                self.spec.name, envelope.attempt, envelope.buildid, envelope.replayonly,
                envelope.routing_key(),
            )  # fmt: skip
            await message.ack()
            return
        accepts = self._accepts.get(model)
        if accepts is not None and not _accepted(accepts, envelope):
            await message.ack()  # not one this handler records: no guard, no handler
            return
        consumer = self.spec.name
        if await self._guard("seen", consumer, envelope.id):
            log.info("duplicate %s %s ignored by %s", envelope.type, envelope.id, consumer)
            await message.ack()
            return
        ctx = EventContext(
            envelope=envelope,
            consumer=consumer,
            source=self.source,
            _publish=self._publish,
            _loop=asyncio.get_running_loop(),
            maybe_handled_before=bool(
                message.redelivered or deliveries or headers.get(RETRIES_HEADER) or envelope.replayof
            ),
        )
        try:
            await _run(handler, envelope.event(), ctx, on_loop=self._on_loop[model])
        except (PermanentError, InvalidEvent) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            await self._give_up(envelope, reason)
            await self._dead_letter(message, reason, "permanent")
            return
        except Exception as exc:
            await self._retry_or_give_up(message, envelope, exc)
            return
        await self._guard("mark", consumer, envelope.id)
        await message.ack()

    def _out_of_replay_scope(self, envelope: Envelope) -> bool:
        started = stages_started_by(self.spec.service, envelope.routing_key())
        return bool(started) and not any(in_replay_scope(name, envelope.replayonly) for name in started)

    async def _guard(self, method: str, consumer: str, event_id: str) -> bool | None:
        """The idempotency guard, waiting out an outage of its database while holding the message.

        Holding (not parking, not requeueing) costs no retry and no delivery count, and with the
        consumer's prefetch the queue simply waits; the outage is bounded by GUARD_WAIT_S, after
        which the error propagates and the message is redelivered when the channel goes."""
        if not self._guard_blocks:  # in memory: never unavailable, no thread hop, nothing to wait out
            return getattr(self.guard, method)(consumer, event_id)
        delay, waited = 0.5, 0.0
        while True:
            try:
                return await _call(self.guard, method, consumer, event_id)
            except Exception as exc:
                if waited >= t.GUARD_WAIT_S:
                    raise
                log.warning("%s: idempotency guard unavailable (%s); waiting %.0fs", consumer, exc, delay)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 10.0)

    async def _retry_or_give_up(
        self, message: AbstractIncomingMessage, envelope: Envelope, exc: Exception
    ) -> None:
        retries = int((message.headers or {}).get(RETRIES_HEADER, 0) or 0)
        reason = f"{type(exc).__name__}: {exc}"
        if retries >= t.MAX_RETRIES:
            reason = f"gave up after {retries + 1} attempts: {reason}"
            await self._give_up(envelope, reason)
            await self._dead_letter(message, reason, "exhausted")
            return
        delay = t.retry_delay_s(retries, self.retry_base_delay_s)
        log.warning("%s failed (%s); retry %d in %.1fs", self.spec.name, reason, retries + 1, delay)
        headers = {RETRIES_HEADER: retries + 1, ERROR_HEADER: reason[:1000]}
        await self._park(self.spec.retry_queue, message, headers, delay)
        await message.ack()

    async def _give_up(self, envelope: Envelope, reason: str) -> None:
        """Let the service report the failure before the message goes to the dead-letter queue.
        Its events get ids derived under `<queue>.gave-up`, apart from the handler's own, so a
        rerun of this path re-emits the same ids and never collides with what the handler sent."""
        report = self.give_up.get(envelope.model())
        if report is None:
            return
        ctx = EventContext(
            envelope=envelope,
            consumer=f"{self.spec.name}.gave-up",
            source=self.source,
            _publish=self._publish,
            _loop=asyncio.get_running_loop(),
        )
        try:
            try:
                event: Event | None = envelope.event()
            except InvalidEvent:
                event = None
            if inspect.iscoroutinefunction(report):
                await report(event, ctx, reason)
            else:
                await asyncio.to_thread(report, event, ctx, reason)
        except Exception:  # the message still goes to the dead-letter queue, where nothing is lost
            log.exception("%s: could not report giving up on %s", self.spec.name, envelope.id)

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str, kind: str) -> None:
        log.error("dead-lettering a message from %s: %s", self.spec.name, reason)
        headers = {ERROR_HEADER: reason[:1000], ERROR_KIND_HEADER: kind}
        await self._park(self.spec.dead_letter_queue, message, headers, None)
        await message.ack()


async def _call(guard: IdempotencyGuard, method: str, consumer: str, event_id: str) -> bool | None:
    """Database guards block, so they run in a thread."""
    return await asyncio.to_thread(getattr(guard, method), consumer, event_id)


def _unwrap(handler: Handler) -> Handler:
    return handler.handler if isinstance(handler, Only) else handler


def _accepted(accepts: Callable[[Any], bool], envelope: Envelope) -> bool:
    """A refused event's data is left to the normal path (it dead-letters it with the reason)."""
    try:
        return accepts(envelope.event())
    except InvalidEvent:
        return True


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "func", None))


async def _run(handler: Handler, event: Event, ctx: EventContext, *, on_loop: bool) -> None:
    """Async handlers run on the loop; plain ones in a thread, so long work never blocks heartbeats."""
    if on_loop:
        await handler(event, ctx)  # type: ignore[misc]
    else:
        await asyncio.to_thread(handler, event, ctx)


def copy_for_parking(
    message: AbstractIncomingMessage, extra_headers: dict[str, Any], delay_s: float | None
) -> aio_pika.Message:
    headers = dict(message.headers or {})
    headers.pop("x-delivery-count", None)
    headers.update(extra_headers)
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        app_id=message.app_id,
        expiration=delay_s,
    )
