"""Finding 10 (first part): one broker user for all. On the real RabbitMQ, in a vhost of its own,
`provision` makes one user per service; each test acts as one service's user and tries what an
attacker holding that service's credentials would (publish another stage's event, read another
service's queue, go around the topic permissions through the default exchange or the parking
exchange) and asserts the broker's refusal, that nothing reached the target queue, and that the
legitimate traffic of every service still flows (a whole chain of stages on the restricted users).
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from urllib.parse import urlsplit

import aio_pika
import httpx
import pytest
from aiormq.exceptions import ChannelAccessRefused

from services.gateway.bootstrap import bootstrap
from shared.bus import Bus, PermanentError
from shared.bus import topology as t
from shared.bus.cancellation import CancelWatch
from shared.bus.connection import PublishRefused
from shared.bus.give_up import end_build_failed
from shared.bus.provision import RabbitmqctlAdmin, provision
from shared.events import (
    BuildFinished,
    BuildRequested,
    Envelope,
    ImagePushed,
    ImageRequested,
    RollbackRequested,
    ScanCompleted,
    StageFinished,
    StageStarted,
    decode,
)
from tests.integration.test_gateway_seed import seed_build
from tests.integration.test_gateway_webhooks import SECRETS, gateway_settings
from tests.unit.samples import SAMPLES
from tests.unit.test_gateway_payloads import gateway_config

pytestmark = pytest.mark.integration

SAMPLE = {type(s): s for s in SAMPLES}


@pytest.fixture(scope="module")
async def provisioned(amqp_url, amqp_vhost, tmp_path_factory):
    """Each service's user provisioned in this module's vhost (removed afterwards)."""
    directory = tmp_path_factory.mktemp("broker-users")
    done = await provision(
        amqp_url, RabbitmqctlAdmin(), credentials_dir=directory, user_prefix=f"{amqp_vhost}-"
    )
    yield done
    delete_users(done)


def delete_users(done) -> None:
    """Users are broker-wide (not per vhost): remove this module's, in parallel."""
    children = [subprocess.Popen(["rabbitmqctl", "-q", "delete_user", item.user]) for item in done]
    for child in children:
        child.wait(timeout=60)


@pytest.fixture(scope="module")
def users(provisioned) -> dict[str, str]:
    """Every service's KILN_AMQP_URL."""
    return {item.service: item.url for item in provisioned}


@pytest.fixture
async def admin(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    yield await connection.channel()
    await connection.close()


async def depth(admin, queue: str) -> int:
    declared = await admin.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count


async def service_bus(users, name: str, **kwargs) -> Bus:
    bus = await Bus(users[name], source=name, instance=uuid.uuid4().hex[:6], **kwargs).connect()
    assert not bus.may_configure, f"{name}'s user may configure the vhost: it is not a provisioned user"
    return bus


def envelope(event, build_id: str, source: str) -> Envelope:
    return Envelope.new(event, source=source, build_id=build_id, package="demo")


async def ignore(message) -> None:
    """A consumer callback that is never reached."""


async def raw_channel(url: str):
    connection = await aio_pika.connect(url)
    return connection, await connection.channel(publisher_confirms=True)


async def test_credentials_files_are_private_and_hold_only_their_own_user(provisioned):
    assert sorted(item.service for item in provisioned) == sorted(spec.name for spec in t.SERVICES)
    for item in provisioned:
        assert item.credentials.stat().st_mode & 0o777 == 0o600
        assert item.credentials.parent.stat().st_mode & 0o077 == 0
        assert item.credentials.read_text() == f"KILN_AMQP_URL={item.url}\n"
        assert urlsplit(item.url).username == item.user and item.user.endswith(f"-{item.service}")


async def test_gateway_user_may_not_publish_another_stage_event(users, admin):
    gateway = await service_bus(users, "gateway")
    try:
        before = await depth(admin, t.DEPLOYER_GATE.name)
        for forged in (SAMPLE[ImagePushed], SAMPLE[BuildFinished]):
            with pytest.raises(PublishRefused) as refused:
                await gateway.publish(envelope(forged, "b-forged", "gateway"))
            assert "ACCESS_REFUSED" in str(refused.value) and forged.routing_key() in str(refused.value)
        # its own event still goes out on the same (reopened) publisher channel
        await gateway.publish(envelope(SAMPLE[BuildRequested], "b-legit", "gateway"))
        await asyncio.sleep(0.3)
        gate = await admin.declare_queue(t.DEPLOYER_GATE.name, passive=True)
        arrived = []
        while (message := await gate.get(no_ack=True, fail=False)) is not None:
            arrived.append(decode(message.body))
        assert len(arrived) == before + 1
        assert [e.buildid for e in arrived if e.buildid == "b-forged"] == []
        assert any(e.buildid == "b-legit" and e.type == BuildRequested.ce_type() for e in arrived)
    finally:
        await gateway.stop(grace_s=2)


@pytest.mark.parametrize(
    ("exchange", "key"),
    [
        ("", t.DEPLOYER_GATE.name),  # the default exchange routes to any queue by name
        (t.PARKING_EXCHANGE, t.DEPLOYER_GATE.retry_queue),  # the retry queue leads back into the gate
        (t.DEAD_LETTER_EXCHANGE, t.DEPLOYER_GATE.name),
        (t.CDEVENTS_EXCHANGE, "service.deployed"),
    ],
)
async def test_gateway_user_may_not_go_around_the_topic_permissions(users, admin, exchange, key):
    before = await depth(admin, t.DEPLOYER_GATE.name)
    retry_before = await depth(admin, t.DEPLOYER_GATE.retry_queue)
    connection, channel = await raw_channel(users["gateway"])
    async with connection:
        target = (
            channel.default_exchange if exchange == "" else await channel.get_exchange(exchange, ensure=False)
        )
        body, headers = envelope(SAMPLE[ImagePushed], "b-around", "gateway").wire()
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
            await target.publish(aio_pika.Message(body, headers=headers), routing_key=key)
    assert await depth(admin, t.DEPLOYER_GATE.name) == before
    assert await depth(admin, t.DEPLOYER_GATE.retry_queue) == retry_before


async def test_imager_user_may_not_read_the_compiler_queue(users, admin):
    connection, channel = await raw_channel(users["imager"])
    async with connection:
        queue = await channel.declare_queue(t.COMPILER_BUILDS.name, passive=True)  # existence is no secret
        with pytest.raises(ChannelAccessRefused, match=f"queue '{t.COMPILER_BUILDS.name}'"):
            await queue.consume(ignore)
    connection, channel = await raw_channel(users["imager"])
    async with connection:
        # nor bind a queue of its own to the compiler's key: topic read permission
        mine = await channel.declare_queue(
            t.transient_queue_name("imager", "cancel", "sneak"), exclusive=True, auto_delete=True
        )
        with pytest.raises(ChannelAccessRefused, match=r"build\.requested"):
            await mine.bind(t.EVENTS_EXCHANGE, routing_key="build.requested")
    connection, channel = await raw_channel(users["imager"])
    async with connection:
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):  # nor make a durable queue
            await channel.declare_queue("kiln.imager.mine", durable=True)


async def test_scanner_user_may_not_request_images(users, admin):
    scanner = await service_bus(users, "scanner")
    try:
        before = await depth(admin, t.imager_queue("amd64").name)
        with pytest.raises(PublishRefused, match=r"image\.requested\.amd64"):
            await scanner.publish(envelope(SAMPLE[ImageRequested], "b-scan-forged", "scanner"))
        assert await depth(admin, t.imager_queue("amd64").name) == before
    finally:
        await scanner.stop(grace_s=2)


async def test_only_the_gateway_may_request_a_rollback(users, admin):
    """A rollback redeploys: every other service's user (a compromised imager, scanner, …) is
    refused rollback.requested, and nothing reaches the deployer's gate; the gateway's arrives."""
    forged = SAMPLE[RollbackRequested]
    others = [spec.name for spec in t.SERVICES if spec.name != "gateway"]
    assert others and all(forged.routing_key() not in spec.keys_published(t.EVENTS_EXCHANGE)
                          for spec in t.SERVICES if spec.name != "gateway")  # fmt: skip
    before = await depth(admin, t.DEPLOYER_GATE.name)
    for name in others:
        bus = await service_bus(users, name)
        try:
            with pytest.raises(PublishRefused, match=r"rollback\.requested"):
                await bus.publish(envelope(forged, f"b-rollback-{name}", name))
        finally:
            await bus.stop(grace_s=2)
    assert await depth(admin, t.DEPLOYER_GATE.name) == before
    gateway = await service_bus(users, "gateway")
    try:
        await gateway.publish(envelope(forged, "b-rollback-legit", "gateway"))
    finally:
        await gateway.stop(grace_s=2)
    await asyncio.sleep(0.3)
    gate = await admin.declare_queue(t.DEPLOYER_GATE.name, passive=True)
    arrived = []
    while (message := await gate.get(no_ack=True, fail=False)) is not None:
        arrived.append(decode(message.body))
    assert [e.buildid for e in arrived if e.type == RollbackRequested.ce_type()] == ["b-rollback-legit"]


async def test_every_declared_publish_of_every_service_is_accepted(users):
    """Each key of topology.SERVICES, published by its own service's user, is confirmed."""
    for spec in t.SERVICES:
        bus = await service_bus(users, spec.name)
        try:
            for exchange, keys in spec.publishes:
                for key in keys:
                    await bus.publish_raw(exchange, key, b"{}", content_type="application/json")
        finally:
            await bus.stop(grace_s=2)


async def test_stage_replay_is_granted_only_when_the_operator_asks(users, amqp_url, amqp_vhost, tmp_path):
    """`provision --allow-stage-replay` lets the gateway republish a stage's trigger event."""
    prefix = f"{amqp_vhost}-replay-"
    done = await provision(
        amqp_url, RabbitmqctlAdmin(), credentials_dir=tmp_path, user_prefix=prefix, allow_stage_replay=True
    )
    try:
        url = next(item.url for item in done if item.service == "gateway")
        gateway = await Bus(url, source="gateway").connect()
        try:
            for key in t.STAGE_REPLAY_KEYS:
                await gateway.publish_raw(t.EVENTS_EXCHANGE, key, b"{}")
            with pytest.raises(PublishRefused):  # still not what no stage replay needs
                await gateway.publish_raw(t.EVENTS_EXCHANGE, "build.finished", b"{}")
        finally:
            await gateway.stop(grace_s=2)
    finally:
        delete_users(done)


async def test_gateway_on_its_own_user_replays_a_build_but_no_later_stage_without_the_grant(
    users, database_url, sessions
):
    """The real gateway app starts on its user (live feeds, subscription consumer), replays a whole
    build (build.requested) and answers a stage replay it may not publish with 403 and the remedy."""
    app = bootstrap(gateway_settings(users["gateway"], database_url), config=gateway_config())
    auth = {"Authorization": f"Bearer {SECRETS['api']}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            build_id, _ = seed_build(sessions, package="busreplay")
            assert (await client.post(f"/builds/{build_id}/replay", headers=auth)).status_code == 202
            refused = await client.post(f"/builds/{build_id}/replay", params={"from": "image"}, headers=auth)
            assert refused.status_code == 403, refused.text
            assert "image.requested" in refused.json()["detail"]
            assert "--allow-stage-replay" in refused.json()["detail"]
            cancel = await client.post(f"/builds/{build_id}/cancel", headers=auth)
            assert cancel.status_code in (200, 202), cancel.text  # the same channel works after a refusal
            assert (await client.get("/readyz")).status_code == 200


# What the deployer's gate consumes from the scanner: its stage.finished (a gate fact).
SCAN_FINISHED = StageFinished(stage="scan", status="succeeded", target="webhook", platform="linux/amd64")


async def test_a_chain_of_stages_runs_on_the_restricted_users(users, admin):
    """gateway -> compiler (fails once: retried through kiln.parking) -> imager -> scanner ->
    deployer (a second build fails permanently: dead-lettered, build ended by its give-up report)
    -> reporter (a CDEvent) and the gateway's subscription queue; cancel watches bound meanwhile."""
    build, bad = f"b-chain-{uuid.uuid4().hex[:6]}", f"b-bad-{uuid.uuid4().hex[:6]}"
    seen: dict[str, list[str]] = {}
    failed_once: set[str] = set()

    def saw(name: str, ctx) -> None:
        seen.setdefault(name, []).append(ctx.build_id)

    async def compile_(event, ctx):
        saw("compiler", ctx)
        if ctx.build_id not in failed_once:
            failed_once.add(ctx.build_id)
            raise RuntimeError("transient, once")
        await ctx.emit_async(StageStarted(stage="compile"))
        await ctx.emit_async(SAMPLE[ImageRequested])

    async def image(event, ctx):
        saw("imager", ctx)
        await ctx.emit_async(SAMPLE[ImagePushed])

    async def scan(event, ctx):
        saw("scanner", ctx)
        await ctx.emit_async(SAMPLE[ScanCompleted])
        await ctx.emit_async(SCAN_FINISHED)

    async def gate(event, ctx):
        saw("deployer", ctx)
        if ctx.build_id == bad:
            raise PermanentError("a forged scan")
        await ctx.emit_async(BuildFinished(status="succeeded", duration_ms=1))

    for spec in t.WORK_QUEUES:  # what earlier tests left (raw probes) is not this chain's
        for name in (spec.name, spec.retry_queue, spec.dead_letter_queue):
            await (await admin.declare_queue(name, passive=True)).purge()
    buses: list[Bus] = []
    reporter_bus: Bus | None = None

    async def report(event, ctx):
        saw("reporter", ctx)
        assert reporter_bus is not None
        await reporter_bus.publish_raw(t.CDEVENTS_EXCHANGE, "pipelinerun.finished", b"{}")

    async def subscription(event, ctx):
        saw("gateway", ctx)

    try:
        for name in ("compiler", "imager", "scanner"):
            bus = await service_bus(users, name, retry_base_delay_s=0.05)
            buses.append(bus)
            await CancelWatch().start(bus)
        compiler, imager, scanner = buses
        await compiler.consume(t.COMPILER_BUILDS, {BuildRequested: compile_})
        await imager.consume(t.imager_queue("amd64"), {ImageRequested: image})
        await scanner.consume(t.SCANNER_IMAGES, {ImagePushed: scan})
        deployer = await service_bus(users, "deployer", retry_base_delay_s=0.05)
        buses.append(deployer)
        await deployer.consume(
            t.DEPLOYER_GATE, {StageFinished: gate}, give_up={StageFinished: end_build_failed("deploy")}
        )
        reporter_bus = await service_bus(users, "reporter")
        buses.append(reporter_bus)
        await reporter_bus.consume(t.REPORTER_HISTORY, {BuildFinished: report})
        gateway = await service_bus(users, "gateway")
        buses.append(gateway)
        live: list[str] = []

        async def on_live(message):
            live.append(decode(message.body).type)

        await gateway.subscribe_transient("live", ["#"], on_live)
        await gateway.consume(t.GATEWAY_SUBSCRIPTIONS, {BuildFinished: subscription})

        await gateway.publish(envelope(SAMPLE[BuildRequested], build, "gateway"))
        await scanner.publish(envelope(SCAN_FINISHED, bad, "scanner"))

        deadline = asyncio.get_running_loop().time() + 30
        while seen.get("gateway", []).count(build) < 1 or bad not in seen.get("reporter", []):
            assert asyncio.get_running_loop().time() < deadline, f"the chain stopped: {seen}"
            await asyncio.sleep(0.1)
        assert seen["compiler"].count(build) == 2  # failed once, parked in its retry queue, back
        assert all(build in seen[name] for name in ("imager", "scanner", "deployer", "reporter"))
        assert await depth(admin, t.DEPLOYER_GATE.dead_letter_queue) == 1  # the forged scan
        assert BuildFinished.ce_type() in live
    finally:
        for bus in buses:
            await bus.stop(grace_s=2)
