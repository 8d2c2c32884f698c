"""The scanner as a running service on a real RabbitMQ vhost and MariaDB database: an
`image.pushed` for an image pushed to the local registry comes back as `scan.completed` with the
verdict, bracketed by stage events; a redelivered event is not scanned twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aio_pika
import pytest

from services.scanner.bootstrap import bootstrap
from services.scanner.report import NO_VULN_DB_NOTE
from services.scanner.settings import ScannerSettings
from shared.bus import Bus
from shared.bus import topology as t
from shared.events import Envelope, ImagePushed
from tests.integration.test_scanner_trivy import dev_env, planted_key_pem, push_image

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).parents[2] / "examples" / "operator" / "config.yaml"


@pytest.fixture
async def scanner_service(amqp_url, database_url, tmp_path):
    env = dev_env()
    settings = ScannerSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        config_path=str(CONFIG),
        trivy=env["KILN_TRIVY"],
        trivy_cache_dir=str(tmp_path / "trivy-cache"),
        trivy_db_download=False,
        registry_username=env["KILN_REGISTRY_USERNAME"],
        registry_password=env["KILN_REGISTRY_PASSWORD"],
        instance=f"test-{uuid.uuid4().hex[:6]}",
    )
    app = bootstrap(settings)
    bus = await app.bus().connect()
    await app.start(bus)
    yield app
    await bus.stop(grace_s=30)


@pytest.fixture
async def observer(amqp_url):
    """An outside tool's queue on `scan.completed` and `stage.#`."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    for key in ("scan.completed", "stage.#"):
        await queue.bind(exchange, key)
    yield queue
    await connection.close()


async def collect(queue, build_id: str, until_type: str, timeout: float = 90) -> list[dict]:
    got: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        body = json.loads(message.body)
        if body["buildid"] == build_id:
            got.append(body)
            if body["type"] == until_type:
                return got
    raise AssertionError(f"no {until_type} for {build_id} within {timeout}s; got {[b['type'] for b in got]}")


async def publish(amqp_url: str, event: ImagePushed, build_id: str) -> Envelope:
    bus = await Bus(amqp_url, source="imager").connect()
    try:
        return await bus.emit(event, build_id=build_id, package="demo")
    finally:
        await bus.stop(grace_s=5)


def pushed(target: str, repository: str, digest: str) -> ImagePushed:
    return ImagePushed(
        target=target, platform="linux/amd64", repository=repository, tag="t", digest=digest, size_bytes=1
    )


async def test_pushed_clean_image_comes_back_as_a_passing_scan(scanner_service, observer, amqp_url):
    repository, digest = await asyncio.to_thread(push_image, "svc-clean", {"/app/ok.txt": b"ok\n"})
    build_id = str(uuid.uuid4())
    await publish(amqp_url, pushed("webhook", repository, digest), build_id)
    events = await collect(observer, build_id, "dev.kiln.stage.finished.v1")
    scan = next(e for e in events if e["type"] == "dev.kiln.scan.completed.v1")
    assert scan["data"]["verdict"] == "pass"
    assert scan["data"]["digest"] == digest
    # No Trivy database here: the worker checked the image's Python packages against the
    # bundled advisory database instead, and says so (docs/scanner.md).
    assert scan["data"]["vuln_db"] == "ok"
    assert "checked offline against safety-db 2021.7.17 (advisories as of 2021-07-01)" in scan["data"]["note"]
    assert NO_VULN_DB_NOTE not in scan["data"]["note"]
    assert scan["package"] == "demo"
    started, finished = events[0], events[-1]
    assert started["data"]["stage"] == finished["data"]["stage"] == "scan"
    assert finished["data"]["status"] == "succeeded"


async def test_pushed_image_with_a_planted_key_fails_naming_the_file(scanner_service, observer, amqp_url):
    files = {"/srv/keys/demo_private.pem": planted_key_pem()}
    repository, digest = await asyncio.to_thread(push_image, "svc-key", files)
    build_id = str(uuid.uuid4())
    envelope = await publish(amqp_url, pushed("report", repository, digest), build_id)
    events = await collect(observer, build_id, "dev.kiln.stage.finished.v1")
    scan = next(e for e in events if e["type"] == "dev.kiln.scan.completed.v1")
    assert scan["data"]["verdict"] == "fail"
    (secret,) = scan["data"]["secrets"]
    assert secret["file"] == "/srv/keys/demo_private.pem"
    assert secret["layer"].startswith("sha256:")
    assert scan["data"]["blocking"][0]["file"] == "/srv/keys/demo_private.pem"
    assert "BEGIN" not in json.dumps(events)
    assert events[-1]["data"]["status"] == "failed"
    assert "/srv/keys/demo_private.pem" in events[-1]["data"]["error"]

    # the same event delivered again (a replayed publish with the same id) is not scanned twice
    bus = await Bus(amqp_url, source="imager").connect()
    try:
        await bus.publish(envelope)
    finally:
        await bus.stop(grace_s=5)
    await asyncio.sleep(3)
    again = []
    while (message := await observer.get(no_ack=True, fail=False)) is not None:
        again.append(json.loads(message.body))
    assert [e for e in again if e["buildid"] == build_id] == []
