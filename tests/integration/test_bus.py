"""The bus against a real RabbitMQ (a vhost of its own): delivery, redelivery, dead letters,
idempotency, tracing, graceful shutdown and reconnection."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid

import aio_pika
import pytest

from shared.bus import Bus, PermanentError, SqlIdempotencyGuard
from shared.bus import topology as t
from shared.bus.declare import declare_work_queue
from shared.bus.errors import ERROR_HEADER, ERROR_KIND_HEADER
from shared.bus.give_up import end_build_failed
from shared.bus.topology import QueueSpec
from shared.events import BuildFinished, BuildRequested, Envelope, decode
from shared.events.trace import trace_id
from tests.integration.consumer_process import killable_spec
from tests.unit.samples import SAMPLES

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus(amqp_url):
    bus = await Bus(amqp_url, source="test").connect()
    yield bus
    await bus.stop(grace_s=5)


def unique_spec(purpose: str, bindings=("build.requested",)) -> QueueSpec:
    return QueueSpec("test", f"{purpose}-{uuid.uuid4().hex[:6]}", tuple(bindings))


async def wait_for(predicate, timeout=15.0, interval=0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def drain(amqp_url: str, queue: str, expected: int, timeout: float = 15.0):
    """Read `expected` messages from a queue with a plain aio-pika client (an outside tool)."""
    connection = await aio_pika.connect(amqp_url)
    got = []
    async with connection:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=False)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            message = await q.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                got.append(message)
    return got


async def test_outside_tool_bound_to_build_hash_gets_every_build_event(bus, amqp_url):
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(t.EVENTS_EXCHANGE)
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(exchange, "build.#")
        for sample in SAMPLES:
            await bus.emit(sample, build_id="b-outside", package="demo")
        build_events = [s for s in SAMPLES if s.routing_key().startswith("build.")]
        received = []
        async with queue.iterator(timeout=10) as it:
            async for message in it:
                await message.ack()
                received.append(message)
                if len(received) == len(build_events):
                    break
        assert [decode(m.body).type for m in received] == [e.ce_type() for e in build_events]
        assert {"build.requested", "build.finished", "build.cancel.requested"} <= {
            m.routing_key for m in received
        }
        headers = received[0].headers
        assert headers["cloudEvents_buildid"] == "b-outside"
        assert received[0].content_type == "application/cloudevents+json"
        assert received[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert await queue.get(fail=False) is None  # nothing that is not build.*


async def test_same_event_twice_has_one_effect(bus, sessions):
    spec = unique_spec("dedupe")
    effects: list[str] = []
    guard = SqlIdempotencyGuard(sessions)
    await bus.consume(spec, {BuildRequested: lambda e, ctx: effects.append(ctx.envelope.id)}, guard=guard)
    envelope = Envelope.new(BuildRequested(package="demo"), source="test", build_id="b-dup")
    await bus.publish(envelope)
    await bus.publish(envelope)
    await wait_for(lambda: len(effects) >= 1)
    await asyncio.sleep(0.5)
    assert effects == [envelope.id]
    assert guard.seen(spec.name, envelope.id)


async def fresh_killable(bus: Bus) -> QueueSpec:
    """A queue of its own, declared now, so no other test's build.requested is waiting in it."""
    spec = killable_spec(f"killable-{uuid.uuid4().hex[:6]}")
    await declare_work_queue(bus._require_publisher(), spec)
    return spec


async def test_killed_consumer_message_is_redelivered_and_handled_once(bus, amqp_url, sessions):
    killable = await fresh_killable(bus)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.consumer_process", amqp_url, "hang", killable.purpose],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        envelope = await bus.emit(BuildRequested(package="demo"), build_id="b-kill")
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == f"RECEIVED {envelope.id}"
    finally:
        proc.kill()  # SIGKILL mid-handler: no ack was sent
        proc.wait()
    effects: list[str] = []
    guard = SqlIdempotencyGuard(sessions)
    handled_before: list[bool] = []

    def handler(event: BuildRequested, ctx) -> None:
        effects.append(ctx.envelope.id)
        handled_before.append(ctx.maybe_handled_before)

    await bus.consume(killable, {BuildRequested: handler}, guard=guard)
    await wait_for(lambda: effects)
    await bus.publish(envelope)  # and a duplicate delivery afterwards changes nothing
    await asyncio.sleep(0.5)
    assert effects == [envelope.id]
    assert handled_before == [True]  # the redelivery knows an earlier attempt may have left work


async def test_handlers_know_a_first_delivery_from_a_retry_or_a_replay(bus, monkeypatch):
    monkeypatch.setattr(t, "RETRY_BASE_DELAY_S", 0.05)
    spec = unique_spec("first-delivery")
    seen: list[tuple[str, bool]] = []

    def handler(event: BuildRequested, ctx) -> None:
        seen.append((event.package, ctx.maybe_handled_before))
        if event.package == "flaky" and len([p for p, _ in seen if p == "flaky"]) == 1:
            raise RuntimeError("transient")

    await bus.consume(spec, {BuildRequested: handler})
    first = await bus.emit(BuildRequested(package="first"), build_id="b-first")
    await wait_for(lambda: ("first", False) in seen)
    await bus.emit(BuildRequested(package="flaky"), build_id="b-flaky")
    await wait_for(lambda: [p for p, _ in seen].count("flaky") == 2)
    await bus.publish(first.replayed())
    await wait_for(lambda: len(seen) == 4)
    assert seen == [("first", False), ("flaky", False), ("flaky", True), ("first", True)]


async def test_poison_message_goes_to_dlq_with_reason_and_consumer_keeps_serving(bus, amqp_url, monkeypatch):
    monkeypatch.setattr(t, "RETRY_BASE_DELAY_S", 0.05)
    spec = unique_spec("poison")
    handled: list[str] = []

    def handler(event: BuildRequested, ctx) -> None:
        if event.package == "poison":
            raise RuntimeError("cannot digest this")
        handled.append(event.package)

    await bus.consume(spec, {BuildRequested: handler})
    await bus.emit(BuildRequested(package="poison"), build_id="b-poison")
    dead = await drain(amqp_url, spec.dead_letter_queue, 1)
    assert len(dead) == 1
    assert dead[0].headers[ERROR_KIND_HEADER] == "exhausted"
    assert f"gave up after {t.MAX_RETRIES + 1} attempts" in dead[0].headers[ERROR_HEADER]
    assert "cannot digest this" in dead[0].headers[ERROR_HEADER]
    await bus.emit(BuildRequested(package="healthy"), build_id="b-after")
    await wait_for(lambda: handled == ["healthy"])


async def test_invalid_and_permanent_failures_dead_letter_at_once(bus, amqp_url):
    spec = unique_spec("permanent")

    def handler(event: BuildRequested, ctx) -> None:
        raise PermanentError("package 'nope' is not in config.yaml")

    await bus.consume(spec, {BuildRequested: handler})
    await bus.publish_raw(t.EVENTS_EXCHANGE, "build.requested", b"{not json")
    await bus.emit(BuildRequested(package="nope"), build_id="b-perm")
    dead = await drain(amqp_url, spec.dead_letter_queue, 2)
    kinds = sorted(m.headers[ERROR_KIND_HEADER] for m in dead)
    assert kinds == ["invalid", "permanent"]
    reasons = " ".join(m.headers[ERROR_HEADER] for m in dead)
    assert "not JSON" in reasons and "not in config.yaml" in reasons


async def test_message_that_keeps_killing_its_consumer_is_dead_lettered(bus, amqp_url):
    killable = await fresh_killable(bus)
    envelope = await bus.emit(BuildRequested(package="killer"), build_id="b-killer")
    crashes = 0
    for _ in range(t.DELIVERY_LIMIT + 1):
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tests.integration.consumer_process", amqp_url, "crash", killable.purpose],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if f"RECEIVED {envelope.id}" not in proc.stdout:
            assert "IDLE" in proc.stdout, proc.stdout + proc.stderr
            break
        crashes += 1
    assert 1 <= crashes < t.DELIVERY_LIMIT
    dead = await drain(amqp_url, killable.dead_letter_queue, 1)
    assert len(dead) == 1
    assert decode(dead[0].body).id == envelope.id
    reason = dead[0].headers.get(ERROR_HEADER) or dead[0].headers.get("x-first-death-reason")
    assert reason and ("kept dying" in reason or reason == "delivery_limit")


async def test_follow_up_events_carry_trace_and_derived_ids(bus, amqp_url):
    spec = unique_spec("trace")
    observed = unique_spec("trace-obs", bindings=("build.finished",))
    finished: list[Envelope] = []

    def handler(event: BuildRequested, ctx) -> None:
        ctx.emit(BuildFinished(status="succeeded"))

    async def observe(event: BuildFinished, ctx) -> None:
        finished.append(ctx.envelope)

    await bus.consume(spec, {BuildRequested: handler})
    await bus.consume(observed, {BuildFinished: observe})
    cause = await bus.emit(BuildRequested(package="demo"), build_id="b-trace", package="demo")
    await wait_for(lambda: finished)
    child = finished[0]
    assert trace_id(child.traceparent) == trace_id(cause.traceparent)
    assert child.id == Envelope.derived_id(cause.id, spec.name, 1)
    assert child.buildid == "b-trace" and child.package == "demo" and child.source == "/kiln/test"


async def test_graceful_shutdown_finishes_the_message_in_hand(amqp_url):
    spec = unique_spec("graceful")
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow(event: BuildRequested, ctx) -> None:
        started.set()
        release.wait(10)
        done.append(ctx.envelope.id)

    worker = await Bus(amqp_url, source="test").connect()
    await worker.consume(spec, {BuildRequested: slow})
    envelope = await worker.emit(BuildRequested(package="demo"), build_id="b-graceful")
    await asyncio.to_thread(started.wait, 10)
    stopping = asyncio.create_task(worker.stop(grace_s=20))
    await asyncio.sleep(0.3)
    assert not stopping.done()  # still waiting for the handler
    release.set()
    await stopping
    assert done == [envelope.id]
    leftovers = await drain(amqp_url, spec.name, 1, timeout=1.0)
    assert leftovers == []  # it was acked before the connection closed


async def test_reconnects_after_broker_restart(amqp_url):
    spec = unique_spec("restart")
    handled: list[str] = []
    worker = await Bus(amqp_url, source="test").connect()
    await worker.consume(spec, {BuildRequested: lambda e, ctx: handled.append(e.package)})
    try:
        await worker.emit(BuildRequested(package="before"), build_id="b-r1")
        await wait_for(lambda: handled == ["before"])
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "stop_app"], check=True, capture_output=True)
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "start_app"], check=True, capture_output=True)
        for _ in range(100):  # publishing fails until the robust connection is back
            try:
                await worker.emit(BuildRequested(package="after"), build_id="b-r2")
                break
            except Exception:
                await asyncio.sleep(0.3)
        await wait_for(lambda: handled == ["before", "after"], timeout=30)
    finally:
        await worker.stop(grace_s=5)


async def test_publish_payload_is_structured_cloudevent(bus, amqp_url):
    spec = unique_spec("raw", bindings=("build.finished",))
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await declare_work_queue(channel, spec)
        await bus.emit(BuildFinished(status="cancelled"), build_id="b-raw")
        (message,) = await drain(amqp_url, spec.name, 1)
        body = json.loads(message.body)
        assert body["specversion"] == "1.0"
        assert body["data"]["status"] == "cancelled"
        assert message.message_id == body["id"]


async def test_recovers_when_the_broker_restarts_under_a_running_handler(amqp_url):
    """The case aio-pika does not restore by itself: a channel whose close raced a handler in
    flight. The bus reopens it; the interrupted message is redelivered and handled, nothing lost."""
    spec = unique_spec("inflight")
    observed = unique_spec("inflight-obs", bindings=("build.finished",))
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow(event: BuildRequested, ctx) -> None:
        if event.package == "first":
            started.set()
            release.wait(60)
        ctx.emit(BuildFinished(status="succeeded"))

    async def observe(event: BuildFinished, ctx) -> None:
        finished.append(ctx.envelope.buildid)

    worker = await Bus(amqp_url, source="test").connect()
    await worker.consume(spec, {BuildRequested: slow})
    await worker.consume(observed, {BuildFinished: observe})
    try:
        await worker.emit(BuildRequested(package="first"), build_id="b-inflight-1")
        assert await asyncio.to_thread(started.wait, 15)
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "stop_app"], check=True, capture_output=True)
        release.set()  # the handler finishes while the broker is down: its publish and park fail
        await asyncio.sleep(3)
        await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "start_app"], check=True, capture_output=True)
        for _ in range(100):
            try:
                await worker.emit(BuildRequested(package="second"), build_id="b-inflight-2")
                break
            except Exception:
                await asyncio.sleep(0.3)
        await wait_for(lambda: {"b-inflight-1", "b-inflight-2"} <= set(finished), timeout=90)
        assert sorted(finished) == ["b-inflight-1", "b-inflight-2"]  # each once
    finally:
        await worker.stop(grace_s=5)


async def test_a_given_up_event_is_reported_before_it_is_dead_lettered(bus, amqp_url, monkeypatch):
    """A stage that gives up on a build's event ends that build with the reason, instead of
    leaving it to wait forever; the message itself still lands in the dead-letter queue."""
    monkeypatch.setattr(t, "RETRY_BASE_DELAY_S", 0.05)
    monkeypatch.setattr(t, "MAX_RETRIES", 1)
    spec = unique_spec("give-up")

    def handler(event: BuildRequested, ctx) -> None:
        if event.package == "permanent":
            raise PermanentError("config.yaml names no such package")
        raise RuntimeError("the registry keeps refusing")

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        finished = await channel.declare_queue("", exclusive=True)
        await finished.bind(await channel.get_exchange(t.EVENTS_EXCHANGE), "build.finished")
        await bus.consume(
            spec, {BuildRequested: handler}, give_up={BuildRequested: end_build_failed("compile")}
        )
        await bus.emit(BuildRequested(package="permanent"), build_id="b-permanent")
        await bus.emit(BuildRequested(package="flaky"), build_id="b-exhausted")
        ended = {}
        async with finished.iterator(timeout=30) as messages:
            async for message in messages:
                await message.ack()
                envelope = decode(message.body)
                ended[envelope.buildid] = envelope.event()
                if len(ended) == 2:
                    break
    assert {e.status for e in ended.values()} == {"failed"}
    assert {e.failed_stage for e in ended.values()} == {"compile"}
    assert "config.yaml names no such package" in ended["b-permanent"].error
    assert "gave up after 2 attempts" in ended["b-exhausted"].error
    assert "the registry keeps refusing" in ended["b-exhausted"].error
    dead = await drain(amqp_url, spec.dead_letter_queue, 2)
    assert sorted(m.headers[ERROR_KIND_HEADER] for m in dead) == ["exhausted", "permanent"]
