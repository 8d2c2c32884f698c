"""Subscribe your own tool to Kiln's build events over AMQP — no Kiln code needed, only aio-pika.

    pip install aio-pika
    python examples/subscribe.py 'build.#'                  # every build lifecycle event
    python examples/subscribe.py 'image.pushed' 'scan.#'    # several patterns
    KILN_AMQP_URL=amqp://user:pass@rabbit:5672/ python examples/subscribe.py '#'

It declares its own durable queue (so nothing is missed while it is down), binds it to the
`kiln.events` topic exchange with the patterns given, and prints one line per event.
Filtering by header without parsing the body is possible too: every message carries the
CloudEvents attributes as `cloudEvents_<name>` headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aio_pika


async def main(patterns: list[str]) -> None:
    url = os.environ.get("KILN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    queue_name = os.environ.get("SUBSCRIBER_QUEUE", "my-tool.kiln-events")
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        exchange = await channel.declare_exchange("kiln.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)
        print(f"listening on {queue_name} for {', '.join(patterns)}", flush=True)
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():  # ack after the block; requeue if it raises
                    event = json.loads(message.body)
                    print(
                        f"{event['time']} {message.routing_key:28} build={event['buildid'][:8]} "
                        f"{json.dumps(event['data'])[:100]}",
                        flush=True,
                    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["build.#"]))
