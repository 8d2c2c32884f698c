"""Webhook → confirmed build.requested latency at 50 concurrent deliveries, beside the broker's bare
publish-with-confirm latency measured in the same run (so the ratio, not the seconds, is the result).

Needs RabbitMQ and MariaDB as on the dev machine. Creates its own vhost and database, starts the
gateway as a subprocess (`python -m services.gateway`), and removes everything afterwards.
Rounds alternate (bare, webhook, bare, webhook, ...) so both see the same machine load, and the
gateway's CPU time per webhook (all its processes) is reported: on a shared machine it is the
figure that load does not move much.

    .venv/bin/python bench/gateway/webhook_latency.py [--rounds 20] [--concurrency 50] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
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
from shared.platforms import ref_of  # noqa: E402

RUN = uuid.uuid4().hex[:8]
VHOST = f"kiln-bench-{RUN}"
DATABASE = f"kiln_bench_{RUN}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def push_body(commit: str) -> bytes:
    """A push to a branch of its own: every build is admitted by its concurrency group at once (a
    new group each time: the groups' dearest path), and none is held or refused by the branch cap."""
    return json.dumps(
        {
            "ref": ref_of(f"feature/bench-{commit[:12]}"),
            "after": commit,
            "deleted": False,
            "head_commit": {"id": commit},
            "repository": {
                "full_name": "example/monorepo",
                "clone_url": "https://github.com/example/monorepo.git",
            },
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


class GatewayLoad:
    """Keep-alive connections to the gateway; each round sends one signed push per connection."""

    def __init__(self, port: int, secret: str, concurrency: int):
        self.port, self.secret, self.concurrency = port, secret, concurrency

    async def open(self) -> GatewayLoad:
        self.connections = [
            await RawConnection("127.0.0.1", self.port).open() for _ in range(self.concurrency)
        ]
        return self

    async def round(self, latencies: list[float], width: int | None = None) -> None:
        await asyncio.gather(
            *(self._one(c, latencies) for c in self.connections[: width or self.concurrency])
        )

    async def _one(self, connection: RawConnection, latencies: list[float]) -> None:
        body = push_body(secrets.token_hex(20))
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(self.secret, body)}
        started = time.perf_counter()
        status = await connection.post("/webhook/github", body, headers)
        latencies.append(time.perf_counter() - started)
        assert status == 202, status

    def close(self) -> None:
        for connection in self.connections:
            connection.writer.close()


class BarePublish:
    """aio-pika publish-with-confirm of the message the gateway publishes, to the same exchange and
    key (same queue fan-out), `concurrency` at a time."""

    def __init__(self, amqp_url: str, concurrency: int):
        self.amqp_url, self.concurrency = amqp_url, concurrency
        self.request = BuildRequested(package="demo", build_number=1, source=Source(ref=ref_of("main")))

    async def open(self) -> BarePublish:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await channel.get_exchange("kiln.events")
        return self

    async def round(self, latencies: list[float], width: int | None = None) -> None:
        await asyncio.gather(*(self._one(latencies) for _ in range(width or self.concurrency)))

    async def _one(self, latencies: list[float]) -> None:
        body = Envelope.new(self.request, source="bench", build_id=str(uuid.uuid4())).to_json()
        message = aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        started = time.perf_counter()
        await self.exchange.publish(message, routing_key="build.requested", mandatory=True)
        latencies.append(time.perf_counter() - started)

    async def close(self) -> None:
        await self.connection.close()


def process_tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of `root` and its children (uvicorn's worker processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [root]
    while pids:
        pid = pids.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pids.extend(int(child) for child in children)
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(600):  # a loaded machine starts Python slowly
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


async def measure(gateway_pid: int, load: GatewayLoad, bare: BarePublish, rounds: int, width: int):
    """Alternating rounds of `width` concurrent requests: (bare latencies, webhook latencies, CPU s)."""
    bare_latencies: list[float] = []
    hook_latencies: list[float] = []
    await bare.round([], width)  # warm-up: connections, pools, caches
    await load.round([], width)
    cpu = 0.0
    for _ in range(rounds):
        await bare.round(bare_latencies, width)
        before = process_tree_cpu_s(gateway_pid)
        await load.round(hook_latencies, width)
        cpu += process_tree_cpu_s(gateway_pid) - before
    return bare_latencies, hook_latencies, cpu


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sequential", type=int, default=200, help="one-at-a-time requests (0: skip)")
    parser.add_argument("--workers", type=int, help="gateway worker processes (default: its own default)")
    parser.add_argument(
        "--concurrency-limit",
        type=int,
        default=1,
        help="KILN_CONCURRENCY_LIMIT (default 1, the gateway's default; 0: no concurrency groups)",
    )
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
        "KILN_CONFIG_PATH": str(ROOT / "examples/operator/config.yaml"),
        "KILN_GITHUB_SECRET": secret,
        "KILN_LOG_LEVEL": "WARNING",
        "KILN_CONCURRENCY_LIMIT": str(args.concurrency_limit),
    }
    command = [sys.executable, "-m", "services.gateway", "--port", str(port)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    gateway = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        await wait_ready(f"http://127.0.0.1:{port}")
        load = await GatewayLoad(port, secret, args.concurrency).open()
        bare = await BarePublish(amqp_url, args.concurrency).open()
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        bare_c, hooks_c, cpu = await measure(gateway.pid, load, bare, args.rounds, args.concurrency)
        if args.sequential:
            bare_1, hooks_1, _ = await measure(gateway.pid, load, bare, args.sequential, 1)
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        load.close()
        await bare.close()
        workers = args.workers or "default"
        print(
            f"concurrency {args.concurrency}, {args.rounds} alternating rounds, workers {workers}, "
            f"KILN_CONCURRENCY_LIMIT {args.concurrency_limit}"
        )
        b50, b99 = report("bare aio-pika publish + confirm", bare_c)
        g50, g99 = report("webhook → confirmed build.requested", hooks_c)
        print(f"ratio gateway/bare: p50 {g50 / b50:.1f}x  p99 {g99 / b99:.1f}x")
        print(f"gateway CPU per webhook: {cpu / len(hooks_c) * 1000:.2f} ms (all its processes)")
        if args.sequential:
            print(f"one at a time, {args.sequential} alternating requests")
            report("bare aio-pika publish + confirm", bare_1)
            report("webhook → confirmed build.requested", hooks_1)
        bench_cpu = resource.getrusage(resource.RUSAGE_SELF)
        print(f"load generator CPU: {bench_cpu.ru_utime + bench_cpu.ru_stime:.1f} s")
    finally:
        gateway.terminate()
        gateway.wait(30)
        subprocess.run(["rabbitmqctl", "delete_vhost", VHOST], capture_output=True)
        with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")


if __name__ == "__main__":
    asyncio.run(main())
