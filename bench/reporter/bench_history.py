"""History ingestion into MariaDB vs the bus's own ceiling, same run, same broker, same events.

1. A vhost and a database of their own (migrated with Alembic), N events of full builds
   (tests/unit/test_reporter_stream.py) published once to `kiln.events`, so they sit in both
   queues below before anything consumes.
2. Ceiling: `Bus.consume` on a `#`-bound queue (prefetch 200) with a handler that does nothing.
3. Reporter: `Bus.consume` on `kiln.reporter.history` with the batching ingestor writing MariaDB.
Both consume the same N messages through the same dispatcher (decode, ack per message); the
difference is the database. Reported as events/s and as the ratio reporter / ceiling.

    PYTHONPATH=. .venv/bin/python bench/reporter/bench_history.py [--events 20000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import time
import uuid
from pathlib import Path

import pymysql

from services.reporter.bootstrap import bootstrap
from services.reporter.settings import ReporterSettings
from shared.bus import Bus
from shared.bus import topology as t
from shared.bus.declare import declare_work_queue
from shared.bus.topology import QueueSpec
from shared.db import make_engine, make_sessions, upgrade
from shared.events import CATALOGUE
from tests.unit.test_reporter_stream import full_build_stream

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
MYSQL = "mysql+pymysql://root@127.0.0.1:3306/"
RESULTS = Path(__file__).resolve().parents[1] / "results"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True)


async def publish_all(bus: Bus, envelopes, window: int = 200) -> float:
    sem = asyncio.Semaphore(window)

    async def one(envelope):
        async with sem:
            await bus.publish(envelope)

    started = time.perf_counter()
    await asyncio.gather(*(one(e) for e in envelopes))
    return time.perf_counter() - started


async def consume_until(bus: Bus, spec: QueueSpec, handlers, done, total: int) -> float:
    started = time.perf_counter()
    await bus.consume(spec, handlers)
    while done() < total:
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def main(events: int, batch: int, prefetch: int) -> dict:
    run = uuid.uuid4().hex[:8]
    vhost, database = f"kiln-bench-{run}", f"kiln_bench_{run}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    db_url = f"{MYSQL}{database}?charset=utf8mb4"
    try:
        upgrade(db_url)
        stream = []
        while len(stream) < events:
            stream.extend(full_build_stream(str(uuid.uuid4())))
        stream = stream[:events]
        ceiling_spec = QueueSpec("bench", "ceiling", ("#",), prefetch=prefetch)
        history_spec = dataclasses.replace(t.REPORTER_HISTORY, prefetch=prefetch)
        bus = await Bus(f"{AMQP}{vhost}", source="reporter").connect()
        channel = await bus._require_connection().channel()
        await declare_work_queue(channel, ceiling_spec)
        publish_s = await publish_all(bus, stream)

        seen = {"n": 0}

        async def nothing(event, ctx):
            seen["n"] += 1

        ceiling_s = await consume_until(bus, ceiling_spec, {m: nothing for m in CATALOGUE},
                                        lambda: seen["n"], events)  # fmt: skip
        engine = make_engine(db_url)
        settings = ReporterSettings(database_url=db_url, history_batch_size=batch)
        reporter = bootstrap(settings, sessions=make_sessions(engine))
        history_s = await consume_until(bus, history_spec, reporter.history_handlers(),
                                        lambda: reporter.history.written, events)  # fmt: skip
        await bus.stop(grace_s=10)
        await reporter.close()
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT COUNT(*) FROM event_log").scalar()
        engine.dispose()
        result = {
            "events": events,
            "batch": batch,
            "prefetch": prefetch,
            "publish_per_s": round(events / publish_s),
            "bus_ceiling_per_s": round(events / ceiling_s),
            "history_per_s": round(events / history_s),
            "ratio_history_to_ceiling": round(ceiling_s / history_s, 3),
            "batches": reporter.history.batches,
            "write_seconds": round(reporter.history.write_seconds, 2),
            "history_seconds": round(history_s, 2),
            "stored": stored,
        }
    finally:
        rabbitmqctl("delete_vhost", vhost)
        with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--prefetch", type=int, default=t.REPORTER_HISTORY.prefetch)
    args = parser.parse_args()
    result = asyncio.run(main(args.events, args.batch, args.prefetch))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reporter_history.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
