"""The Bus: one robust AMQP connection per process, confirmed publishing, consuming with the
policy of `dispatch.py`, graceful shutdown, and automatic reconnection after a broker restart.

A process connects either as a user that may configure the vhost (dev/test, the operator's
admin: it declares the whole topology, idempotently) or as its service's own broker user
(shared.bus.permissions: it checks passively that the topology exists and declares only its
per-process queues). `connect` finds out which by trying, on a throwaway connection."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity

from shared.bus import topology as t
from shared.bus.declare import PROVISION_HINT, declare_exchanges, declare_topology, declare_work_queue
from shared.bus.dispatch import Dispatcher, GiveUpTable, HandlerTable, copy_for_parking
from shared.bus.errors import PermanentError
from shared.bus.idempotency import IdempotencyGuard, MemoryIdempotencyGuard
from shared.events import Envelope, Event
from shared.events.envelope import CONTENT_TYPE

log = logging.getLogger("kiln.bus")

MessageCallback = Callable[[AbstractIncomingMessage], Awaitable[None]]


class PublishRefused(PermanentError):
    """The broker refused a publish (ACCESS_REFUSED): this service's user may not send that key."""

    def __init__(self, message: str, *, exchange: str, key: str):
        super().__init__(message)
        self.exchange, self.key = exchange, key


class TopologyMissing(RuntimeError):
    """A service's own user found an exchange or queue missing that only the admin may declare."""


@dataclass
class _Consumer:
    """One consumer and how to open it again: `open` returns (channel, queue, consumer tag)."""

    name: str
    open: Callable[[], Awaitable[tuple[Any, Any, str]]]
    channel: Any = None
    queue: Any = None
    tag: str = ""

    async def start(self) -> None:
        self.channel, self.queue, self.tag = await self.open()


class Bus:
    def __init__(
        self,
        amqp_url: str,
        *,
        source: str,
        instance: str | None = None,
        retry_base_delay_s: float | None = None,
    ):
        self.amqp_url = amqp_url
        self.retry_base_delay_s = retry_base_delay_s
        self.source = source
        self.instance = instance or uuid.uuid4().hex[:8]
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._consumers: list[_Consumer] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        # True until `connect` finds this user may not configure the vhost (a service's own user).
        self.may_configure = True

    @classmethod
    def from_settings(cls, settings: Any, *, source: str) -> Bus:
        """The usual way a service makes its bus: URL, instance name and retry budget from settings."""
        return cls(
            settings.amqp_url,
            source=source,
            instance=settings.instance,
            retry_base_delay_s=settings.retry_base_delay_s,
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self, *, declare: bool = True) -> Bus:
        self._connection = await aio_pika.connect_robust(
            self.amqp_url,
            client_properties={"connection_name": f"kiln-{self.source}-{self.instance}"},
            reconnect_interval=2,
        )
        self._publisher = await self._open_publisher()
        if declare:
            self.may_configure = await self._declare_or_check()
        self._connection.reconnect_callbacks.add(self._heal)
        return self

    async def _declare_or_check(self) -> bool:
        """Declare the whole topology if this user may; else check that it exists. A refused
        declare closes its channel, so both run on a connection of their own."""
        probe = await aio_pika.connect(
            self.amqp_url,
            client_properties={"connection_name": f"kiln-{self.source}-{self.instance}-declare"},
        )
        try:
            try:
                await declare_topology(await probe.channel())
                return True
            except ChannelAccessRefused:
                log.info(
                    "%s's broker user may not configure the vhost: using the provisioned topology",
                    self.source,
                )
            try:
                channel = await probe.channel()
                await declare_exchanges(channel, passive=True)
                for spec in _queues_of(self.source):
                    await declare_work_queue(channel, spec, passive=True)
            except ChannelNotFoundEntity as exc:
                raise TopologyMissing(
                    f"{self.source}: {exc.args[-1] if exc.args else exc}; {PROVISION_HINT}"
                ) from None
            return False
        finally:
            await probe.close()

    async def _open_publisher(self) -> AbstractRobustChannel:
        self._exchanges.clear()
        return await self._require_connection().channel(publisher_confirms=True, on_return_raises=True)

    async def _heal(self, *_: Any) -> None:
        """After a reconnect aio-pika restores every channel, except one whose close raced a
        handler in flight (its close callback fails and it stays closed for good: seen when the
        broker restarted under a running build). Reopen whatever did not come back."""
        if self._stopping.is_set():
            return
        try:
            if self._publisher is None or self._publisher.is_closed:
                self._publisher = await self._open_publisher()
                log.warning("reopened the publishing channel after a reconnect")
            for consumer in self._consumers:
                if consumer.channel is None or consumer.channel.is_closed:
                    await consumer.start()
                    log.warning("consuming %s again after a reconnect", consumer.name)
        except Exception:  # the next reconnect or publish tries again
            log.exception("could not reopen channels after a reconnect")

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def stop(self, grace_s: float = 600) -> None:
        """Stop taking messages, let the ones in hand finish (they ack), then close."""
        self._stopping.set()
        for consumer in self._consumers:
            try:
                await consumer.queue.cancel(consumer.tag)
            except Exception:  # already gone with a dead connection; nothing to cancel
                log.debug("cancel of %s failed", consumer.name, exc_info=True)
        self._consumers.clear()
        if self._in_flight:
            log.info("waiting for %d message(s) in hand", len(self._in_flight))
            await asyncio.wait(set(self._in_flight), timeout=grace_s)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, envelope: Envelope, *, exchange: str = t.EVENTS_EXCHANGE) -> None:
        """Persistent, mandatory, and awaited until the broker confirms it."""
        # The cached exchange unless the publisher channel went away: one dict lookup per event.
        target = self._exchanges.get(exchange)
        if target is None or self._require_publisher().is_closed:
            target = await self._exchange(exchange)
        body, headers = envelope.wire()
        message = aio_pika.Message(
            body=body,
            headers=headers,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.id,
            type=envelope.type,
            app_id=envelope.source,
            timestamp=envelope.time,
        )
        key = envelope.routing_key()
        try:
            await target.publish(message, routing_key=key, mandatory=True)
        except ChannelAccessRefused as exc:
            raise self._refused(exchange, key, exc) from None

    def _refused(self, exchange: str, key: str, exc: BaseException) -> PublishRefused:
        return PublishRefused(
            f"the broker refused {self.source}'s publish of {key!r} on {exchange}: its user may not "
            f"publish that key (shared.bus.topology.SERVICES; the operator provisions the users with "
            f"`python -m shared.bus provision`): {exc}",
            exchange=exchange,
            key=key,
        )

    async def publish_raw(self, exchange: str, routing_key: str, body: bytes, **properties: Any) -> None:
        """For other wire formats on Kiln's exchanges (the CDEvents feed)."""
        target = await self._exchange(exchange)
        message = aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties)
        try:
            await target.publish(message, routing_key=routing_key, mandatory=False)
        except ChannelAccessRefused as exc:
            raise self._refused(exchange, routing_key, exc) from None

    async def emit(
        self, event: Event, *, build_id: str, package: str = "", cause: Envelope | None = None
    ) -> Envelope:
        envelope = Envelope.new(event, source=self.source, build_id=build_id, package=package, cause=cause)
        await self.publish(envelope)
        return envelope

    async def _park(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        delay_s: float | None,
    ) -> None:
        # Through kiln.parking, not the default exchange: a service's user may write only its
        # own queues' keys there, while the default exchange would reach any queue by name.
        parking = await self._exchange(t.PARKING_EXCHANGE)
        await parking.publish(
            copy_for_parking(message, headers, delay_s), routing_key=t.parking_key(queue), mandatory=True
        )

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        channel = await self._publishing_channel()
        if name not in self._exchanges:
            self._exchanges[name] = await channel.get_exchange(name, ensure=False)
        return self._exchanges[name]

    async def open_channel(self) -> AbstractRobustChannel:
        """A plain channel (no publisher confirms) on this process's connection, for fire-and-forget
        publishing that must never wait on the broker (live log lines); exchanges declared on it."""
        channel = await self._require_connection().channel(publisher_confirms=False)
        await declare_exchanges(channel, passive=not self.may_configure)
        return channel

    def _require_publisher(self) -> AbstractRobustChannel:
        if self._publisher is None:
            raise RuntimeError("Bus.connect() was not called")
        return self._publisher

    async def _publishing_channel(self) -> AbstractRobustChannel:
        """The publisher channel, reopened first if a reconnect left it closed."""
        if self._require_publisher().is_closed and self.connected:
            await self._heal()
        return self._require_publisher()

    # -- consuming --------------------------------------------------------------------------

    async def consume(
        self,
        spec: t.QueueSpec,
        handlers: HandlerTable,
        *,
        guard: IdempotencyGuard | None = None,
        give_up: GiveUpTable | None = None,
        replay_scope: bool = True,
    ) -> None:
        """Start consuming `spec`'s queue with manual ack and the queue's prefetch. `give_up`
        reports an event that is dead-lettered after it was read; `replay_scope=False`: this
        queue also takes the events a `replay --only` keeps from other stages (dispatch.py)."""
        await _warm_up(guard)
        dispatcher = Dispatcher(
            spec=spec,
            handlers=handlers,
            guard=guard or MemoryIdempotencyGuard(),
            source=self.source,
            publish=self.publish,
            park=self._park,
            retry_base_delay_s=self.retry_base_delay_s,
            give_up=give_up,
            replay_scope=replay_scope,
        )
        callback = self._tracked(dispatcher)

        async def open_work_queue() -> tuple[Any, Any, str]:
            channel = await self._require_connection().channel()
            await channel.set_qos(prefetch_count=spec.prefetch)
            queue = await declare_work_queue(channel, spec, passive=not self.may_configure)
            return channel, queue, await queue.consume(callback, no_ack=False)

        consumer = _Consumer(spec.name, open_work_queue)
        await consumer.start()
        self._consumers.append(consumer)
        log.info("consuming %s (prefetch %d)", spec.name, spec.prefetch)

    async def subscribe_transient(
        self,
        purpose: str,
        bindings: Iterable[str],
        callback: Callable[[AbstractIncomingMessage], Awaitable[None]],
        *,
        exchange: str = t.EVENTS_EXCHANGE,
        arguments: dict[str, object] | None = None,
    ) -> str:
        """An exclusive, auto-deleted queue for this process only (live views, cancel signals).
        Messages are acked on receipt: these consumers observe, they do not own work."""
        name = t.transient_queue_name(self.source, purpose, self.instance)
        tracked = self._tracked(callback)
        keys = list(bindings)

        async def open_transient_queue() -> tuple[Any, Any, str]:
            channel = await self._require_connection().channel()
            await channel.set_qos(prefetch_count=100)
            exchanges = await declare_exchanges(channel, passive=not self.may_configure)
            queue = await channel.declare_queue(name, exclusive=True, auto_delete=True, arguments=arguments)
            for key in keys:
                await queue.bind(exchanges[exchange], routing_key=key)
            return channel, queue, await queue.consume(tracked, no_ack=True)

        consumer = _Consumer(name, open_transient_queue)
        await consumer.start()
        self._consumers.append(consumer)
        return name

    def _tracked(
        self, callback: Callable[[AbstractIncomingMessage], Awaitable[None]]
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def run(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await callback(message)
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        return run

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Bus.connect() was not called")
        return self._connection


async def _warm_up(guard: IdempotencyGuard | None) -> None:
    """Connect the guard's database before the first message. A failure is not fatal here: the
    dispatcher waits out an unavailable guard while holding the message (dispatch.py)."""
    warm_up = getattr(guard, "warm_up", None)
    if warm_up is None:
        return
    try:
        await asyncio.to_thread(warm_up)
    except Exception as exc:
        log.warning("idempotency guard not reachable yet (%s); its first event will wait for it", exc)


def _queues_of(source: str) -> tuple[t.QueueSpec, ...]:
    """The work queues a known service consumes (checked at start); none for other sources."""
    return next((spec.queues for spec in t.SERVICES if spec.name == source), ())
