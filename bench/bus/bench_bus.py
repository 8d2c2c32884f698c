"""Publish→consume throughput and latency: Kiln's bus vs a bare aio-pika loop, same run, same broker.

Both sides use a durable quorum queue, persistent messages, publisher confirms, manual acks, the
same prefetch and publish window, and the same bytes on the wire (the bare loop sends a
pre-serialised CloudEvent with the same cloudEvents_* headers). Kiln adds building and
validating the event models, the idempotency guard, the retry/dead-letter policy and derived
ids. Reported as ratios (Kiln / bare): the median of each round's paired ratio (the two sides run
back to back, so a load change from other jobs hits both), and the process CPU time per message,
which other jobs on the machine disturb less than wall time.

    python bench/bus/bench_bus.py [--messages 5000] [--window 64] [--prefetch 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid

import aio_pika

from shared.bus import Bus
from shared.bus.topology import QueueSpec
from shared.events import BuildRequested, Envelope

BASE = "amqp://guest:guest@127.0.0.1:5672/"


def vhost_url(vhost: str) -> str:
    return f"{BASE}{vhost}"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True)


async def publish_windowed(count: int, window: int, publish_one) -> None:
    sem = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with sem:
            await publish_one(i)

    await asyncio.gather(*(one(i) for i in range(count)))


async def run_bare(url: str, count: int, window: int, prefetch: int) -> tuple[float, list[float]]:
    connection = await aio_pika.connect(url)
    async with connection:
        pub = await connection.channel(publisher_confirms=True)
        exchange = await pub.declare_exchange("bench.bare", aio_pika.ExchangeType.TOPIC, durable=True)
        sub = await connection.channel()
        await sub.set_qos(prefetch_count=prefetch)
        queue = await sub.declare_queue(
            f"bench.bare.{uuid.uuid4().hex[:6]}", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind("bench.bare", "build.requested")
        latencies: list[float] = []
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            sent = json.loads(message.body)["t"]
            latencies.append(time.perf_counter() - sent)
            await message.ack()
            if len(latencies) == count:
                done.set()

        await queue.consume(on_message)
        template = Envelope.new(BuildRequested(package="p0"), source="bench", build_id="0")
        headers = template.amqp_headers()
        raw = json.loads(template.to_json())
        start = time.perf_counter()

        async def publish(i: int) -> None:
            raw["t"] = time.perf_counter()
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(raw).encode(),
                    headers=headers,
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(i),
                    type=template.type,
                ),
                routing_key="build.requested",
            )

        await publish_windowed(count, window, publish)
        await done.wait()
        return time.perf_counter() - start, latencies


async def run_kiln(url: str, count: int, window: int, prefetch: int) -> tuple[float, list[float]]:
    # declare=False: the full Kiln topology would fan each event out to every subscriber's
    # quorum queue, which measures the broker, not the bus. Both sides route to one queue.
    bus = await Bus(url, source="bench").connect(declare=False)
    latencies: list[float] = []
    done = asyncio.Event()
    sent_at: dict[str, float] = {}

    async def on_requested(event: BuildRequested, ctx) -> None:
        latencies.append(time.perf_counter() - sent_at[event.package])
        if len(latencies) == count:
            done.set()

    spec = QueueSpec("bench", f"kiln-{uuid.uuid4().hex[:6]}", ("build.requested",), prefetch=prefetch)
    await bus.consume(spec, {BuildRequested: on_requested})
    start = time.perf_counter()

    async def publish(i: int) -> None:
        key = f"p{i}"
        sent_at[key] = time.perf_counter()
        await bus.emit(BuildRequested(package=key), build_id=str(i))

    await publish_windowed(count, window, publish)
    await done.wait()
    elapsed = time.perf_counter() - start
    await bus.stop(grace_s=5)
    return elapsed, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    vhost = f"kiln-bench-{uuid.uuid4().hex[:6]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    rows = []
    try:
        for round_no in range(args.rounds):
            # Alternate the order so neither side always runs on a warmer broker.
            order = ("bare", "kiln") if round_no % 2 == 0 else ("kiln", "bare")
            for name in order:
                runner = run_bare if name == "bare" else run_kiln
                cpu_before = time.process_time()
                elapsed, lat = await runner(vhost_url(vhost), args.messages, args.window, args.prefetch)
                cpu_us = (time.process_time() - cpu_before) / args.messages * 1e6
                rows.append((name, args.messages / elapsed, pct(lat, 0.5), pct(lat, 0.99), cpu_us, round_no))
                print(
                    f"round {round_no + 1} {name:4}: {rows[-1][1]:8.0f} msg/s  "
                    f"p50 {rows[-1][2]:6.1f} ms  p99 {rows[-1][3]:6.1f} ms  cpu {cpu_us:5.0f} us/msg",
                    flush=True,
                )
    finally:
        rabbitmqctl("delete_vhost", vhost)
    bare = [r for r in rows if r[0] == "bare"]
    kiln = [r for r in rows if r[0] == "kiln"]
    med = lambda rs, i: statistics.median(r[i] for r in rs)  # noqa: E731
    print(
        f"\nmedian over {args.rounds} rounds, {args.messages} messages, window {args.window}, "
        f"prefetch {args.prefetch}"
    )
    print(f"bare : {med(bare, 1):8.0f} msg/s  p50 {med(bare, 2):6.1f} ms  p99 {med(bare, 3):6.1f} ms")
    print(f"kiln : {med(kiln, 1):8.0f} msg/s  p50 {med(kiln, 2):6.1f} ms  p99 {med(kiln, 3):6.1f} ms")
    paired = [k[1] / b[1] for b in bare for k in kiln if k[5] == b[5]]
    print(f"cpu per message: bare {med(bare, 4):.0f} us, kiln {med(kiln, 4):.0f} us")
    print(f"kiln/bare throughput ratio: {med(kiln, 1) / med(bare, 1):.2f} of the medians, ")
    print(
        f"  {statistics.median(paired):.2f} median of paired rounds (min {min(paired):.2f}, "
        f"max {max(paired):.2f}); cpu bare/kiln {med(bare, 4) / med(kiln, 4):.2f} (target >= 0.80)"
    )


if __name__ == "__main__":
    asyncio.run(main())
