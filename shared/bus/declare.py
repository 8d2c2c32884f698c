"""Declares the topology of `topology.py` on a channel. Idempotent.

Two ways, by who the process is on the broker:
- may configure (the operator's admin in `provision`, or the dev/test user with `.*`): declares
  every exchange, queue and binding (`declare_topology`), as every service did at start before
  per-service users;
- a service's own broker user (shared.bus.permissions): configures nothing durable, so it checks
  passively that what it uses exists (`passive=True`), and fails with the command that fixes it.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from shared.bus import topology as t

EXCHANGE_TYPES = {
    t.EVENTS_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    t.CDEVENTS_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    t.DEAD_LETTER_EXCHANGE: aio_pika.ExchangeType.DIRECT,
    t.LOGS_EXCHANGE: aio_pika.ExchangeType.TOPIC,
    t.PARKING_EXCHANGE: aio_pika.ExchangeType.TOPIC,
}
PROVISION_HINT = "the operator creates it with `python -m shared.bus provision` (docs/operations.md)"


async def declare_exchanges(
    channel: AbstractChannel, *, passive: bool = False
) -> dict[str, AbstractExchange]:
    exchanges = {}
    for name, kind in EXCHANGE_TYPES.items():
        if passive:
            exchanges[name] = await channel.declare_exchange(name, passive=True)
        else:
            exchanges[name] = await channel.declare_exchange(name, kind, durable=True)
    return exchanges


async def declare_work_queue(
    channel: AbstractChannel, spec: t.QueueSpec, *, passive: bool = False
) -> aio_pika.abc.AbstractQueue:
    if passive:
        return await channel.declare_queue(spec.name, passive=True)
    exchanges = await declare_exchanges(channel)
    queue = await channel.declare_queue(spec.name, durable=True, arguments=t.quorum_arguments(spec))
    for key in spec.bindings:
        await queue.bind(exchanges[t.EVENTS_EXCHANGE], routing_key=key)
    retry = await channel.declare_queue(spec.retry_queue, durable=True, arguments=t.retry_arguments(spec))
    await retry.bind(exchanges[t.PARKING_EXCHANGE], routing_key=t.parking_key(spec.retry_queue))
    dlq = await channel.declare_queue(
        spec.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(exchanges[t.DEAD_LETTER_EXCHANGE], routing_key=spec.name)
    await dlq.bind(exchanges[t.PARKING_EXCHANGE], routing_key=t.parking_key(spec.dead_letter_queue))
    return queue


async def declare_topology(channel: AbstractChannel) -> None:
    """Every work queue exists before any producer publishes, so no event is routed nowhere."""
    for spec in t.WORK_QUEUES:
        await declare_work_queue(channel, spec)
