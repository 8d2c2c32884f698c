"""`POST /packages/{package}/rollback` and `kiln rollback` on a real gateway: the run history on
MariaDB (rows written as the reporter would), rollback.requested published to a real RabbitMQ
vhost. Every refusal is checked to publish nothing."""

from __future__ import annotations

import asyncio
import random
import subprocess

import aio_pika
import pytest
from sqlalchemy import delete, update

from shared.bus import Bus
from shared.bus import topology as t
from shared.db.models import BuildRun, BuildStep
from shared.events import BuildFinished, Envelope, StageFinished, StageStarted, decode
from tests.integration.test_gateway_api import AUTH, everything, gateway  # noqa: F401  (fixtures)
from tests.integration.test_gateway_cli import KILN, cli_env
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_server import running_gateway

pytestmark = pytest.mark.integration


def seed_numbered(sessions, package: str, *, status="succeeded", deployed=True) -> tuple[str, int]:
    """A finished build of `package` under a number no other test's build has."""
    build_id, _ = seed_build(sessions, package=package, status=status)
    number = random.randint(10_000, 10_000_000)
    with sessions() as s:
        s.execute(update(BuildRun).where(BuildRun.build_id == build_id).values(build_number=number))
        if not deployed:  # skip_deploy: the gate ended the build, no deploy step
            s.execute(
                delete(BuildStep).where(
                    BuildStep.build_id == build_id, BuildStep.stage.in_(("deploy", "verify"))
                )
            )
        s.commit()
    return build_id, number


@pytest.fixture
async def rollbacks(amqp_url):
    """Every rollback.requested published while the test runs."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "rollback.requested")

    async def take():
        await asyncio.sleep(0.5)
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(decode(message.body))
        return got

    yield take
    await connection.close()


async def test_rollback_starts_a_run_of_its_own_naming_the_earlier_build(gateway, sessions, everything):  # noqa: F811
    target, number = seed_numbered(sessions, "demo")
    reply = await gateway.post("/packages/demo/rollback", json={"to": number}, headers=AUTH)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["rollback_to"] == {"build_id": target, "build_number": number}
    run_id = body["build_id"]
    assert run_id != target and body["build_number"] >= 1
    ((key, envelope),) = await everything(run_id)
    event = envelope.event()
    assert key == "rollback.requested" and envelope.source == "/kiln/gateway" and envelope.package == "demo"
    assert (event.to_build_id, event.to_number, event.build_number) == (target, number, body["build_number"])
    assert event.trigger.kind == "rollback" and event.source.ref == "refs/heads/main"
    assert event.source.commit == "c" * 40 and event.version == "axion"
    # The next request gets the next number of the same counter.
    again = await gateway.post("/packages/demo/rollback", json={"to": number}, headers=AUTH)
    assert again.json()["build_number"] > body["build_number"]


async def test_rollbacks_that_cannot_be_are_refused_with_the_reason_and_publish_nothing(
    gateway,  # noqa: F811
    sessions,
    rollbacks,
):
    _, other_number = seed_numbered(sessions, "demo-cloud")  # another package's build number
    _, failed_number = seed_numbered(sessions, "demo", status="failed")
    _, running_number = seed_numbered(sessions, "demo", status="running")
    _, undeployed_number = seed_numbered(sessions, "demo", deployed=False)
    cases = [
        ("demo", other_number, 404, f"package 'demo' has no build #{other_number}"),
        ("demo", 9_999_999_999, 404, "has no build #9999999999"),
        ("nosuch", 1, 404, "no package 'nosuch'"),
        ("demo", failed_number, 409, f"build #{failed_number} failed at scan: only a build that succeeded"),
        ("demo", running_number, 409, "is still running"),
        ("demo", undeployed_number, 409, "was never deployed"),
    ]
    for package, number, code, reason in cases:
        reply = await gateway.post(f"/packages/{package}/rollback", json={"to": number}, headers=AUTH)
        assert reply.status_code == code and reason in reply.json()["detail"], (package, number, reply.text)
    for bad in ({"to": 0}, {"to": "one"}, {}, {"to": 1, "images": ["evil@sha256:" + "0" * 64]}):
        reply = await gateway.post("/packages/demo/rollback", json=bad, headers=AUTH)
        assert reply.status_code == 422, (bad, reply.text)
    # No token, a wrong one, a Basic one (the browser's cached read credentials): refused.
    _, number = seed_numbered(sessions, "demo")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp3cm9uZw=="}):
        reply = await gateway.post("/packages/demo/rollback", json={"to": number}, headers=headers)
        assert reply.status_code == 401, reply.text
    assert await rollbacks() == []


async def test_kiln_rollback_follows_the_run_and_exits_with_its_result(amqp_url, database_url, sessions):
    target, number = seed_numbered(sessions, "demo")
    publisher = await Bus(amqp_url, source="test").connect()
    try:
        async with running_gateway(amqp_url, database_url) as (url, app):
            process = await asyncio.create_subprocess_exec(
                *KILN, "rollback", "demo", "--to", str(number),
                env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert first.startswith(f"rollback of demo to build #{number} ({target}) started as build "), (
                first
            )
            run_id = first.split()[-2]
            live = app.state.deps.live
            while not live._listeners:  # the CLI's stream is open: nothing published now is missed
                await asyncio.sleep(0.05)
            gone = f"127.0.0.1:5000/kiln/axion-webhook-demo@sha256:{'e' * 64}"
            pruned = f"build {number}'s images were pruned: {gone}"
            for event in (
                StageStarted(stage="deploy"),
                StageFinished(stage="deploy", status="failed", error=pruned),
                BuildFinished(status="failed", failed_stage="deploy", error=pruned),
            ):
                await publisher.publish(Envelope.new(event, source="test", build_id=run_id, package="demo"))
            out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await publisher.stop(grace_s=1)
    text = out.decode()
    assert process.returncode == 1, (text, err.decode())
    assert "✗ deploy failed" in text and text.rstrip().splitlines()[-1].startswith("build failed at deploy")
    assert "images were pruned" in text.rstrip().splitlines()[-1]


async def test_the_dashboard_shows_a_rollback_run_as_a_rollback_to_its_build(gateway, sessions):  # noqa: F811
    target, number = seed_numbered(sessions, "demo")
    run_id, _ = seed_build(sessions, package="demo")
    with sessions() as s:
        s.execute(
            update(BuildRun)
            .where(BuildRun.build_id == run_id)
            .values(trigger_kind="rollback", options={"rollback_to": number, "rollback_to_build": target})
        )
        s.commit()
    page = await gateway.get(f"/ui/builds/{run_id}")
    assert page.status_code == 200
    assert f'<a id="rollback-to" href="/ui/builds/{target}">#{number}</a>' in page.text
    listing = await gateway.get("/", params={"package": "demo", "limit": 500})
    assert f"rollback to #{number}" in listing.text
