"""What a stage pays per live log line, against what it already pays per logged line, same run.

Baseline: a worker thread logs N lines through the root logger with Kiln's redacting formatter
(`shared.logging.setup_logging`) into /dev/null — the cost of one `log.info` in a stage today.
Measured: the same thread writes the same N lines into a LogStream while the LogShipper ships them
to the real broker (a queue bound to `log.#` takes them). Reported per line, and as a ratio. Also:
how many lines reached the queue and how many the bounded buffer dropped (a burst of N lines as
fast as the CPU allows is far beyond any real stage; the buffer keeps the newest).

    python bench/live_logs/write_cost.py [--lines 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid

import aio_pika

from shared.bus import Bus
from shared.bus import topology as t
from shared.bus.live_logs import LogShipper
from shared.logging import setup_logging

BASE = os.environ.get("KILN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/").rstrip("/") + "/"
LINE = "[{n}] ok       factory.package.module_{n} (812 ms) cythonize + cc -O2 -fPIC linux/amd64 done"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True)


def baseline(lines: int) -> float:
    log = logging.getLogger("kiln.bench.stage")
    started = time.perf_counter()
    for n in range(lines):
        log.info(LINE.format(n=n))
    return time.perf_counter() - started


def shipped(stream, lines: int) -> float:
    started = time.perf_counter()
    for n in range(lines):
        stream(LINE.format(n=n))
    return time.perf_counter() - started


async def one_round(url: str, lines: int) -> dict[str, float]:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.LOGS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "log.#")
    bus = await Bus(url, source="bench").connect()
    shipper = LogShipper("bench")
    await shipper.start(bus)
    stream = shipper.stream(str(uuid.uuid4()), stage="compile")
    base_s = await asyncio.to_thread(baseline, lines)
    ship_s = await asyncio.to_thread(shipped, stream, lines)
    await asyncio.to_thread(stream.close)
    await asyncio.sleep(1)
    received = dropped = 0
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        data = json.loads(message.body)["data"]
        received += len(data["lines"]) - (1 if data["dropped"] else 0)
        dropped += data["dropped"]
    await bus.stop(grace_s=1)
    await connection.close()
    return {
        "base_us": base_s / lines * 1e6,
        "ship_us": ship_s / lines * 1e6,
        "received": received,
        "dropped": dropped,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with open(os.devnull, "w") as null:
        sys.stderr = null  # the baseline's handler writes here
        setup_logging("INFO")
        sys.stderr = sys.__stderr__
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115
    vhost = f"kiln-bench-logs-{uuid.uuid4().hex[:6]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        results = [await one_round(BASE + vhost, args.lines) for _ in range(args.rounds)]
    finally:
        rabbitmqctl("delete_vhost", vhost)
    base = statistics.median(r["base_us"] for r in results)
    ship = statistics.median(r["ship_us"] for r in results)
    print(f"{args.lines} lines per round, {args.rounds} rounds (medians)")
    print(f"  log.info with the redacting formatter: {base:6.2f} µs/line")
    print(f"  LogStream write (shipping live):       {ship:6.2f} µs/line   ratio {ship / base:.2f}x")
    for r in results:
        print(
            f"  round: {r['received']:.0f} lines reached the queue, {r['dropped']:.0f} dropped by the buffer"
        )


if __name__ == "__main__":
    asyncio.run(main())
