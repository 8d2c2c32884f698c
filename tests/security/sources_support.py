"""Shared by test_sources.py and test_delivery_limits.py: an operator config built from the example,
a real gateway (RabbitMQ vhost + MariaDB database of the test) and what reached build.requested."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import yaml

from services.gateway.bootstrap import bootstrap
from services.gateway.settings import GatewaySettings
from services.gateway.webhooks.signature import sign
from shared.bus import topology as t
from shared.config import KilnConfig, parse_config
from shared.events import Envelope, decode

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "operator" / "config.yaml"  # the whole package
# Made up, >= 32 bytes; what matters is that the gateway checks them.
SECRETS = {name: secrets.token_hex(20) for name in ("github", "bitbucket_cloud", "bitbucket_server", "api")}


def operator_config(packages: dict[str, dict[str, Any]], keys_dir: str = "/tmp/kiln-test-keys") -> dict:
    """The example's config with `packages` = {name: webhooks section}, each a copy of demo."""
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    demo = raw["packages"]["demo"]
    demo["keys"] = {"dir": keys_dir}
    raw["packages"] = {name: {**copy.deepcopy(demo), "webhooks": hooks} for name, hooks in packages.items()}
    return raw


def parsed(raw: dict) -> KilnConfig:
    return parse_config(yaml.safe_dump(raw), {}, source_name="operator.yaml", source_dir=Path("/nonexistent"))


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def settings(amqp_url: str, database_url: str, **extra: Any) -> GatewaySettings:
    return GatewaySettings(
        amqp_url=amqp_url,
        database_url=database_url,
        github_secret=SECRETS["github"],
        bitbucket_cloud_secret=SECRETS["bitbucket_cloud"],
        bitbucket_server_secret=SECRETS["bitbucket_server"],
        api_token=SECRETS["api"],
        # Builds of one branch side by side (these tests are about sources, not concurrency groups).
        **({"concurrency_limit": 0} | extra),
    )


@asynccontextmanager
async def real_gateway(
    amqp_url: str, database_url: str, config: KilnConfig, **extra: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The production app (real Bus, MariaDB) on the test's vhost and database."""
    app = bootstrap(settings(amqp_url, database_url, **extra), config=config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


class Requested:
    """A queue bound to build.requested: what the compiler would receive."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue):
        self._queue = queue

    async def take(self, settle_s: float = 0.5) -> list[Envelope]:
        await asyncio.sleep(settle_s)  # 202 means confirmed: anything published is routed by now
        got = []
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            got.append(decode(message.body))
        return got


@asynccontextmanager
async def build_requests(amqp_url: str) -> AsyncIterator[Requested]:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(exchange, "build.requested")
        yield Requested(queue)
    finally:
        await connection.close()


HEADERS = {
    "github": ("X-GitHub-Event", "X-Hub-Signature-256", "X-GitHub-Delivery"),
    "bitbucket-cloud": ("X-Event-Key", "X-Hub-Signature", "X-Request-UUID"),
    "bitbucket-server": ("X-Event-Key", "X-Hub-Signature", "X-Request-Id"),
}


async def deliver(
    client: httpx.AsyncClient, provider: str, event: str, payload: Any, *, body: bytes | None = None
) -> httpx.Response:
    """A delivery signed with the provider's secret, as the provider (or anyone holding it) sends it."""
    raw = body if body is not None else json.dumps(payload).encode()
    event_header, signature_header, delivery_header = HEADERS[provider]
    headers = {
        "Content-Type": "application/json",
        event_header: event,
        signature_header: sign(SECRETS[provider.replace("-", "_")], raw),
        delivery_header: secrets.token_hex(8),
    }
    return await client.post(f"/webhook/{provider}", content=raw, headers=headers)


def api(token: str = SECRETS["api"]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
