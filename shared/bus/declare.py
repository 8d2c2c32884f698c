"""Declares the topology of `topology.py` on a channel. Idempotent: every service runs it at start."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from shared.bus import topology as t


async def declare_exchanges(channel: AbstractChannel) -> dict[str, AbstractExchange]:
    events = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    cdevents = await channel.declare_exchange(t.CDEVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(t.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
    logs = await channel.declare_exchange(t.LOGS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    return {
        t.EVENTS_EXCHANGE: events,
        t.CDEVENTS_EXCHANGE: cdevents,
        t.DEAD_LETTER_EXCHANGE: dlx,
        t.LOGS_EXCHANGE: logs,
    }


async def declare_work_queue(channel: AbstractChannel, spec: t.QueueSpec) -> aio_pika.abc.AbstractQueue:
    exchanges = await declare_exchanges(channel)
    queue = await channel.declare_queue(spec.name, durable=True, arguments=t.quorum_arguments(spec))
    for key in spec.bindings:
        await queue.bind(exchanges[t.EVENTS_EXCHANGE], routing_key=key)
    await channel.declare_queue(spec.retry_queue, durable=True, arguments=t.retry_arguments(spec))
    dlq = await channel.declare_queue(
        spec.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(exchanges[t.DEAD_LETTER_EXCHANGE], routing_key=spec.name)
    return queue


async def declare_topology(channel: AbstractChannel) -> None:
    """Every work queue exists before any producer publishes, so no event is routed nowhere."""
    for spec in t.WORK_QUEUES:
        await declare_work_queue(channel, spec)
