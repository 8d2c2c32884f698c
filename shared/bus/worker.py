"""One shape for every service's worker, and one way to run it.

Every service's `bootstrap(settings, **fakes)` returns a `Worker`: its source name, what it
consumes (`Consumer`: a queue from shared.bus.topology, its handler table, its give-up table;
`Subscription`: a transient queue such as the gateway's live view), its idempotency guard, its
cancel watch and live-log shipper if it has them, start-up and shutdown hooks, and its health
port. `run_worker(worker)` runs any of them until SIGTERM/SIGINT (shared.bus.runner.run_service):
connect, start the cancel watch and the log shipper, run the start-up hooks, consume, serve
`/healthz` and `/readyz`, then stop gracefully and run the shutdown hooks.

Unit tests call `bootstrap(settings, fake=...)` and use the handler tables directly
(`worker.handlers(queue)`) or what the service keeps in `worker.parts`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.connection import Bus
from shared.bus.dispatch import GiveUpTable, HandlerTable
from shared.bus.idempotency import IdempotencyGuard
from shared.bus.live_logs import LogShipper
from shared.bus.runner import run_service

Hook = Callable[[], Awaitable[None] | None]
BusHook = Callable[[Bus], Awaitable[None] | None]


@dataclass
class Consumer:
    """One durable queue and what handles it. `handlers` may be a function of the connected bus
    (the reporter's CDEvents publisher publishes on it). `use_guard=False`: no idempotency guard
    (the gateway's subscriptions: receivers dedupe). `wait_for`: a coroutine to await before
    consuming, in the background (the gateway's subscriptions lease)."""

    queue: t.QueueSpec
    handlers: HandlerTable | Callable[[Bus], HandlerTable]
    give_up: GiveUpTable = field(default_factory=dict)
    use_guard: bool = True
    wait_for: Callable[[], Awaitable[None]] | None = None
    # False: the queue takes events of a `kiln replay --only` attempt whatever stage they would
    # start (the deployer's gate, which ends that attempt); see shared.bus.dispatch.
    replay_scope: bool = True

    def table(self, bus: Bus | None = None) -> HandlerTable:
        return self.handlers(bus) if callable(self.handlers) else self.handlers  # type: ignore[arg-type,return-value]


@dataclass
class Subscription:
    """A transient, exclusive queue (gone with the process): the gateway's live view and logs."""

    purpose: str
    keys: list[str]
    on_message: Callable[[Any], Awaitable[None]]
    exchange: str | None = None
    arguments: Mapping[str, Any] | None = None


@dataclass
class Worker:
    source: str
    settings: Any  # the service's settings: the bus is made from them
    consumers: list[Consumer | Subscription] = field(default_factory=list)
    guard: IdempotencyGuard | None = None
    cancel: CancelWatch | None = None
    logs: LogShipper | None = None
    on_start: list[BusHook] = field(default_factory=list)  # before consuming (registry login…)
    on_stop: list[Hook] = field(default_factory=list)  # after the bus stopped (flush, close)
    health_port: int | None = None
    # What the service's other commands and tests reach for (the scanner's trivy, the reporter's
    # notifier and sessions); the runner never looks in here.
    parts: dict[str, Any] = field(default_factory=dict)
    _background: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    def bus(self) -> Bus:
        return Bus.from_settings(self.settings, source=self.source)

    def handlers(self, queue: t.QueueSpec) -> HandlerTable:
        """The handler table of `queue` (unit tests call handlers without a broker)."""
        for consumer in self.consumers:
            if isinstance(consumer, Consumer) and consumer.queue.name == queue.name:
                return consumer.table()
        raise KeyError(f"{self.source} does not consume {queue.name}")

    async def start(self, bus: Bus) -> None:
        """Registered with run_service: watches and shipper first, then the hooks, then consume."""
        if self.cancel is not None:
            await self.cancel.start(bus)
        for hook in self.on_start:
            await _call(hook, bus)
        if self.logs is not None:
            await self.logs.start(bus)
        await start_consumers(bus, self.consumers, guard=self.guard, background=self._background)

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        for hook in self.on_stop:
            await _call(hook)


async def start_consumers(
    bus: Bus,
    consumers: list[Consumer | Subscription],
    *,
    guard: IdempotencyGuard | None = None,
    background: list[asyncio.Task[None]] | None = None,
) -> None:
    """Start every consumer on a connected bus (the gateway calls this from its app start-up)."""
    for consumer in consumers:
        if isinstance(consumer, Subscription):
            await bus.subscribe_transient(
                consumer.purpose,
                consumer.keys,
                consumer.on_message,
                **({"exchange": consumer.exchange} if consumer.exchange else {}),
                **({"arguments": consumer.arguments} if consumer.arguments is not None else {}),
            )
            continue
        consume = _consume(bus, consumer, guard if consumer.use_guard else None)
        if consumer.wait_for is None:
            await consume()
        else:
            task = asyncio.create_task(_after(consumer.wait_for, consume))
            if background is not None:
                background.append(task)


def run_worker(worker: Worker) -> int:
    """Run `worker` until SIGTERM/SIGINT (the worker command of every service's __main__)."""

    async def serve() -> None:
        try:
            await run_service(worker.bus(), worker.start, health_port=worker.health_port)
        finally:
            await worker.close()

    asyncio.run(serve())
    return 0


def _consume(bus: Bus, consumer: Consumer, guard: IdempotencyGuard | None) -> Callable[[], Awaitable[None]]:
    async def consume() -> None:
        await bus.consume(
            consumer.queue,
            consumer.table(bus),
            guard=guard,
            give_up=consumer.give_up,
            replay_scope=consumer.replay_scope,
        )

    return consume


async def _after(wait_for: Callable[[], Awaitable[None]], then: Callable[[], Awaitable[None]]) -> None:
    await wait_for()
    await then()


async def _call(hook: Callable[..., Any], *args: Any) -> None:
    result = hook(*args)
    if inspect.isawaitable(result):
        await result
