"""`python -m services.gateway --workers 2` as a real process tree on a real RabbitMQ vhost and
MariaDB: webhooks through either worker start each build once, /metrics sums both workers, every
worker's live stream sees every event, and HTTP subscriptions are delivered by one worker only,
also after that worker is killed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest
import uvicorn

from services.gateway.subscriptions.delivery import CACHE_TTL_S
from services.gateway.webhooks.signature import sign
from shared.bus import Bus
from shared.bus import topology as t
from shared.events import BuildFinished, Envelope, decode
from tests.integration.test_gateway_server import free_port
from tests.integration.test_gateway_subscriptions import Receiver
from tests.unit.test_gateway_fakes import make_secrets
from tests.unit.test_gateway_payloads import commit_hash

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRETS = make_secrets()
AUTH = {"Authorization": f"Bearer {SECRETS['api']}"}
ACCEPTED = re.compile(r'^kiln_gateway_webhooks_total\{outcome="accepted",provider="github"\} (\S+)$', re.M)


def push(commit: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": commit,
            "head_commit": {"id": commit},
            "repository": {
                "full_name": "example/monorepo",
                "clone_url": "https://github.com/example/monorepo.git",
            },
            "pusher": {"name": "workers-test"},
        }
    ).encode()
    return body, {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(SECRETS["github"], body)}


def queues(vhost: str) -> dict[str, int]:
    """Queue name → consumer count, as the broker sees it."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "consumers"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {
        name: int(count) for name, count in (line.split() for line in listing.splitlines() if line.strip())
    }


async def eventually(check, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.fixture
async def gateway_workers(amqp_url, database_url, tmp_path):
    port = free_port()
    log = tmp_path / "gateway.log"
    env = os.environ | {
        "KILN_AMQP_URL": amqp_url,
        "KILN_DATABASE_URL": database_url,
        "KILN_CONFIG_PATH": str(ROOT / "examples/operator/config.yaml"),
        "KILN_GITHUB_SECRET": SECRETS["github"],
        "KILN_API_TOKEN": SECRETS["api"],
        "KILN_INSTANCE": "gw",
        "KILN_SUBSCRIPTION_ALLOWED_HOSTS": "127.0.0.1",  # the test's receiver is on loopback
        # 20 builds of one branch at once, all started: no concurrency group, no branch cap (its
        # count is exact once admitted, test_gateway_concurrency.py).
        "KILN_CONCURRENCY_LIMIT": "0",
        "KILN_MAX_BUILDS_PER_BRANCH": "100",
    }
    with log.open("w") as output:
        command = [sys.executable, "-m", "services.gateway", "--port", str(port), "--workers", "2"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                async with httpx.AsyncClient(base_url=url) as client:
                    return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, 60, "the gateway to be ready")
        yield url, process, log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


async def test_two_workers_share_the_work_and_not_the_singletons(gateway_workers, amqp_url, amqp_vhost):
    url, process, log = gateway_workers
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    requested = await channel.declare_queue("", exclusive=True)
    await requested.bind(exchange, "build.requested")
    publisher = await Bus(amqp_url, source="test").connect()
    receiver = Receiver()
    receiver_port = free_port()
    receiver_server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=receiver_port, log_level="warning")
    )
    receiver_task = asyncio.create_task(receiver_server.serve())
    try:
        # Both workers are up: one live queue each, and one consumer on the subscriptions queue.
        async def two_live_queues_one_deliverer():
            found = queues(amqp_vhost)
            live = [n for n, consumers in found.items() if ".live." in n and consumers == 1]
            return len(live) == 2 and found.get(t.GATEWAY_SUBSCRIPTIONS.name) == 1

        await eventually(two_live_queues_one_deliverer, what="two live queues and one subscriptions consumer")

        # Webhooks over 20 separate connections (the kernel spreads them over both workers).
        async def deliver(commit: str) -> httpx.Response:
            body, headers = push(commit)
            async with httpx.AsyncClient(base_url=url) as client:
                return await client.post("/webhook/github", content=body, headers=headers)

        commits = [commit_hash() for _ in range(20)]
        replies = await asyncio.gather(*(deliver(c) for c in commits))
        assert [r.status_code for r in replies] == [202] * 20
        again = await asyncio.gather(*(deliver(c) for c in commits[:5]))  # redeliveries, same ref + hash
        assert [r.json()["status"] for r in again] == ["duplicate"] * 5

        events = []
        while len(events) < 20:
            message = await requested.get(timeout=10)
            await message.ack()
            events.append(decode(message.body).event())
        await asyncio.sleep(0.5)
        assert await requested.get(fail=False) is None  # exactly one build per push
        numbers = sorted(e.build_number for e in events)  # the run's database is shared: any start
        assert numbers == list(range(numbers[0], numbers[0] + 20))

        # Whichever worker answers the scrape, the count is both workers' sum.
        for _ in range(6):
            async with httpx.AsyncClient(base_url=url) as client:
                metrics = (await client.get("/metrics")).text
            assert [float(v) for v in ACCEPTED.findall(metrics)] == [20.0]

        # Live streams on separate connections each see a published event.
        build_id = str(uuid.uuid4())
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as a,
            httpx.AsyncClient(base_url=url, timeout=30) as b,
        ):
            streams = [
                await client.send(
                    client.build_request("GET", "/events/stream", params={"filter": "build.finished"}),
                    stream=True,
                )
                for client in (a, b)
            ]
            await publisher.publish(
                Envelope.new(BuildFinished(status="succeeded"), source="test", build_id=build_id)
            )
            for stream in streams:
                async with asyncio.timeout(20):
                    async for line in stream.aiter_lines():
                        if line.startswith("data:") and build_id in line:
                            break
                await stream.aclose()

        # A subscription is delivered once, not once per worker.
        async with httpx.AsyncClient(base_url=url) as client:
            created = await client.post(
                "/subscriptions",
                json={"url": f"http://127.0.0.1:{receiver_port}/hook", "filter": "build.finished"},
                headers=AUTH,
            )
        assert created.status_code == 201
        await asyncio.sleep(CACHE_TTL_S + 0.5)  # the deliverer may be the other worker (its cache)

        async def delivered(build: str) -> int:
            return sum(build in body.decode() for _path, _headers, body in receiver.received)

        async def publish_finished() -> str:
            build = str(uuid.uuid4())
            await publisher.publish(
                Envelope.new(BuildFinished(status="succeeded"), source="test", build_id=build)
            )
            return build

        first = await publish_finished()
        await eventually(lambda: delivered(first), what="the subscription delivery")
        await asyncio.sleep(2)
        assert await delivered(first) == 1

        # The delivering worker dies: the other (or its replacement) takes the lock and delivers.
        holder = int(re.findall(r"worker (\d+) delivers the HTTP subscriptions", log.read_text())[-1])
        os.kill(holder, signal.SIGKILL)

        async def new_deliverer():
            found = re.findall(r"worker (\d+) delivers the HTTP subscriptions", log.read_text())
            return int(found[-1]) != holder and queues(amqp_vhost).get(t.GATEWAY_SUBSCRIPTIONS.name) == 1

        await eventually(new_deliverer, what="another worker to deliver subscriptions")
        await asyncio.sleep(CACHE_TTL_S + 0.5)
        second = await publish_finished()
        await eventually(lambda: delivered(second), what="the delivery after the takeover")
        await asyncio.sleep(2)
        assert await delivered(second) == 1
        assert process.poll() is None
    finally:
        await publisher.stop(grace_s=1)
        await connection.close()
        receiver_server.should_exit = True
        await receiver_task
