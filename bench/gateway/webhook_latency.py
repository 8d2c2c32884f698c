"""Webhook → confirmed build.requested latency at 50 concurrent deliveries, beside the broker's bare
publish-with-confirm latency measured in the same run (so the ratio, not the seconds, is the result).

Needs RabbitMQ and MariaDB as on the dev machine. Creates its own vhost and database, starts the
gateway as a subprocess (`python -m services.gateway`), and removes everything afterwards.

    .venv/bin/python bench/gateway/webhook_latency.py [--rounds 20] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
import pymysql

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.gateway.webhooks.signature import sign  # noqa: E402
from shared.db import upgrade  # noqa: E402
from shared.events import BuildRequested, Envelope  # noqa: E402
from shared.events.build import Source  # noqa: E402

RUN = uuid.uuid4().hex[:8]
VHOST = f"kiln-bench-{RUN}"
DATABASE = f"kiln_bench_{RUN}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def push_body(commit: str) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "after": commit,
            "deleted": False,
            "head_commit": {"id": commit},
            "repository": {"full_name": "example/monorepo", "clone_url": "https://example.invalid/m.git"},
            "pusher": {"name": "bench"},
        }
    ).encode()


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must not eat the CPU it measures
    (httpx costs about as much CPU per request as the gateway itself on this 2-core machine)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def open(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: application/json\r\n{head}\r\n"
        ).encode() + body
        self.writer.write(request)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def bench_gateway(port: int, secret: str, rounds: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    connections = [await RawConnection("127.0.0.1", port).open() for _ in range(concurrency)]

    async def one(connection: RawConnection) -> None:
        body = push_body(secrets.token_hex(20))
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, body)}
        started = time.perf_counter()
        status = await connection.post("/webhook/github", body, headers)
        latencies.append(time.perf_counter() - started)
        assert status == 202, status

    await asyncio.gather(*(one(c) for c in connections))  # warm-up: connections, pools
    latencies.clear()
    for _ in range(rounds):
        await asyncio.gather(*(one(c) for c in connections))
    for connection in connections:
        connection.writer.close()
    return latencies


async def bench_bare_publish(amqp_url: str, rounds: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("kiln.events")
        # The same message the gateway publishes, to the same exchange and key (same queue fan-out).
        request = BuildRequested(package="demo", build_number=1, source=Source(ref="refs/heads/main"))

        async def one() -> None:
            body = Envelope.new(request, source="bench", build_id=str(uuid.uuid4())).to_json()
            message = aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            started = time.perf_counter()
            await exchange.publish(message, routing_key="build.requested", mandatory=True)
            latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one() for _ in range(concurrency)))
        latencies.clear()
        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(200):
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("gateway did not become ready")


def report(name: str, values: list[float]) -> tuple[float, float]:
    p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
    mean = statistics.mean(values) * 1000
    print(f"{name:40} n={len(values):5}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  mean {mean:7.2f} ms")
    return p50, p99


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    subprocess.run(["rabbitmqctl", "add_vhost", VHOST], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4")
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
    database_url = f"mysql+pymysql://root@127.0.0.1:3306/{DATABASE}?charset=utf8mb4"
    upgrade(database_url)
    secret = secrets.token_hex(16)
    port = free_port()
    env = os.environ | {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": str(ROOT / "examples/monorepo/config.yaml"),
        "KILN_GITHUB_SECRET": secret,
        "KILN_LOG_LEVEL": "WARNING",
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "services.gateway", "--port", str(port)], cwd=ROOT, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url)
        bare = await bench_bare_publish(amqp_url, args.rounds, args.concurrency)
        hooks = await bench_gateway(port, secret, args.rounds, args.concurrency)
        bare_again = await bench_bare_publish(amqp_url, args.rounds, args.concurrency)
        print(f"concurrency {args.concurrency}, {args.rounds} rounds")
        b50, b99 = report("bare aio-pika publish + confirm", bare + bare_again)
        g50, g99 = report("webhook → confirmed build.requested", hooks)
        print(f"ratio gateway/bare: p50 {g50 / b50:.1f}x  p99 {g99 / b99:.1f}x")
    finally:
        gateway.terminate()
        gateway.wait(30)
        subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True)
        with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")


if __name__ == "__main__":
    asyncio.run(main())
