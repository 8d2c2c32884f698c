"""The deployer worker on a real RabbitMQ vhost and MariaDB database: the gate ends builds through
the bus, exactly once even when events are published twice."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from services.deployer.bootstrap import bootstrap
from services.deployer.settings import DeployerSettings
from shared.bus import Bus, SqlIdempotencyGuard
from shared.bus.topology import DEPLOYER_GATE
from shared.db.models import ProcessedEvent
from shared.events import (
    BuildCancelRequested,
    BuildRequested,
    CompileCompleted,
    ImageFailed,
    ImagePushed,
    StageFinished,
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
        where = {"target": t.target, "platform": t.platform}
        events.append(StageFinished(stage="push", status="succeeded", **where))
        events.append(StageFinished(stage="scan", status="succeeded", detail={"verdict": "pass"}, **where))
        events.append(StageFinished(stage="attest", status="succeeded", **where))
    await _publish(client, build_id, *events)
    await _publish(client, build_id, events[-1])  # a replayed last fact: no second finish
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


async def test_a_failing_scan_fact_fails_the_build_with_its_summary(worker, client):
    build_id = str(uuid.uuid4())
    where = {"target": "webhook", "platform": "linux/amd64"}
    await _publish(
        client,
        build_id,
        CompileCompleted(ok=True, targets=(TargetPlatform(**where),)),
        StageFinished(
            stage="scan",
            status="failed",
            detail={"counts": {"CRITICAL": 1}, "blocking": ["CVE-2024-9"]},
            error="1 CRITICAL finding (max 0)",
            **where,
        ),
    )
    await _wait(lambda: client.finished.get(build_id))
    (finished,) = client.finished[build_id]
    assert finished["failed_stage"] == "scan"
    assert finished["error"] == (
        "scan of webhook (linux/amd64) failed: CRITICAL=1; blocking: CVE-2024-9; 1 CRITICAL finding (max 0)"
    )


async def test_other_stages_finished_are_acked_without_a_guard_row(worker, client, sessions):
    """The gate queue gets every stage.finished; a non-gate stage's costs no database write."""
    build_id = str(uuid.uuid4())
    others = [
        await client.emit(StageFinished(stage="compile", status="succeeded"), build_id=build_id),
        await client.emit(
            StageFinished(stage="image", status="failed", target="w", platform="linux/amd64"),
            build_id=build_id,
        ),
    ]
    fact = await client.emit(
        StageFinished(stage="push", status="succeeded", target="w", platform="linux/amd64"), build_id=build_id
    )

    def guarded() -> set[str]:
        with sessions() as session:
            ids = [e.id for e in (*others, fact)]
            return set(
                session.execute(
                    select(ProcessedEvent.event_id).where(ProcessedEvent.event_id.in_(ids))
                ).scalars()
            )

    await _wait(lambda: fact.id in guarded())  # the gate fact went through the guard
    assert guarded() == {fact.id}  # the others, published before it, were acked without one
