"""The deployer worker on a real RabbitMQ vhost and MariaDB database: the gate ends builds through
the bus, exactly once even when events are published twice."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from services.deployer.bootstrap import bootstrap
from services.deployer.settings import DeployerSettings
from shared.bus import Bus, SqlIdempotencyGuard
from shared.bus.topology import DEPLOYER_GATE
from shared.events import (
    BuildCancelRequested,
    BuildRequested,
    CompileCompleted,
    ImageFailed,
    ImagePushed,
    ScanCompleted,
    decode,
)
from shared.events.build import Options
from shared.events.compile import TargetPlatform

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "operator" / "config.yaml"
DIGEST = "sha256:" + "b" * 64


def _no_substrate(name: str):
    raise AssertionError(f"these builds must not deploy (asked for {name})")


@pytest.fixture
async def worker(amqp_url, database_url, sessions):
    settings = DeployerSettings(config_path=str(CONFIG), amqp_url=amqp_url, database_url=database_url)
    handlers = bootstrap(settings, sessions, substrate_for=_no_substrate, env={}).handlers(DEPLOYER_GATE)
    bus = await Bus(amqp_url, source="deployer").connect()
    await bus.consume(DEPLOYER_GATE, handlers, guard=SqlIdempotencyGuard(sessions))
    yield bus
    await bus.stop(grace_s=5)


@pytest.fixture
async def client(amqp_url):
    bus = await Bus(amqp_url, source="test").connect()
    finished: dict[str, list[dict]] = {}

    async def on_message(message):
        envelope = decode(message.body)
        finished.setdefault(envelope.buildid, []).append(envelope.data)

    await bus.subscribe_transient("watch-finished", ["build.finished"], on_message)
    bus.finished = finished  # type: ignore[attr-defined]
    yield bus
    await bus.stop(grace_s=5)


async def _wait(predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _publish(client, build_id, *events):
    for event in events:
        await client.emit(event, build_id=build_id, package="demo")


async def test_skip_deploy_build_finishes_succeeded_once(worker, client):
    build_id = str(uuid.uuid4())
    targets = tuple(TargetPlatform(target="webhook", platform=p) for p in ("linux/amd64", "linux/arm64"))
    events = [
        BuildRequested(package="demo", options=Options(skip_deploy=True)),
        CompileCompleted(ok=True, targets=targets),
    ]
    for t in targets:
        events.append(
            ImagePushed(
                target=t.target, platform=t.platform, repository="r/w", tag="b1", digest=DIGEST, size_bytes=1
            )
        )
        events.append(
            ScanCompleted(
                target=t.target, platform=t.platform, digest=DIGEST, scanner="trivy", verdict="pass"
            )
        )
    await _publish(client, build_id, *events)
    await _publish(client, build_id, events[-1])  # a replayed last scan: no second finish
    await _wait(lambda: client.finished.get(build_id))
    await asyncio.sleep(1.5)
    assert [f["status"] for f in client.finished[build_id]] == ["succeeded"]


async def test_image_failure_fails_the_build_and_a_late_cancel_changes_nothing(worker, client):
    build_id = str(uuid.uuid4())
    await _publish(
        client,
        build_id,
        CompileCompleted(ok=True, targets=(TargetPlatform(target="webhook", platform="linux/arm64"),)),
        ImageFailed(target="webhook", platform="linux/arm64", error="proof failed: ModuleNotFoundError"),
        BuildCancelRequested(reason="too late"),
    )
    await _wait(lambda: client.finished.get(build_id))
    await asyncio.sleep(1.5)
    (finished,) = client.finished[build_id]
    assert finished["status"] == "failed" and finished["failed_stage"] == "image"
    assert "webhook (linux/arm64)" in finished["error"]


async def test_cancel_ends_an_open_build_as_cancelled(worker, client):
    build_id = str(uuid.uuid4())
    await _publish(client, build_id, BuildRequested(package="demo"), BuildCancelRequested(reason="user"))
    await _wait(lambda: client.finished.get(build_id))
    await asyncio.sleep(1.0)
    assert [f["status"] for f in client.finished[build_id]] == ["cancelled"]
