"""Concurrency groups on the real parts: the gateway (in process, its real bootstrap) on a RabbitMQ
vhost and MariaDB, the run history written by the reporter's own writer from every event on the
bus, the deployer's real cancel handler. The test plays the stages' part only where a stage would
report (stage.started, build.finished): builds need no compile to prove who may run when.

Two pushes to one branch under each mode give the documented outcome (docs/gateway.md
"Concurrency groups"): `queue` starts the second only after the first's build.finished (order
asserted from the history's event_log), also across a gateway restart with the build.finished
sent while it was down; `supersede` cancels the first naming the second. Limit 2 runs two; a
different branch is not held; a cancelled held build never starts and frees nothing; a build the
watchdog times out frees its slot; held builds are not the watchdog's; a flood on one branch is
bounded and does not hold other branches back."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid

import aio_pika
import httpx
import pytest
import yaml
from anyio import to_thread
from sqlalchemy import select

from services.deployer.handlers import on_cancel_requested
from services.deployer.store import GateStore
from services.gateway.bootstrap import bootstrap
from services.gateway.models import ConcurrencySlot
from services.reporter.history_writer import write_batch
from services.reporter.watchdog import Watchdog
from shared.bus import topology as t
from shared.bus.context import EventContext
from shared.config import parse_config
from shared.db.models import BuildRun, EventLog
from shared.events import BuildFinished, Envelope, StageStarted, decode
from tests.integration.test_gateway_webhooks import SECRETS, gateway_settings
from tests.unit.test_gateway_payloads import EXAMPLE_CONFIG, commit_hash, delivery, github_push

pytestmark = pytest.mark.integration

GROUPS = {
    "cq": {"limit": 1, "mode": "queue"},
    "cs": {"limit": 1, "mode": "supersede"},
    "c2": {"limit": 2, "mode": "queue"},
    "cf": {"limit": 1, "mode": "queue"},
}


def concurrency_config():
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    demo = raw["packages"]["demo"]
    for name, group in GROUPS.items():
        package = copy.deepcopy(demo)
        package["webhooks"] = {"repository": f"example/{name}", "provider": "github"}
        package["concurrency"] = group
        raw["packages"][name] = package
    return parse_config(
        yaml.safe_dump(raw), {}, source_name=str(EXAMPLE_CONFIG), source_dir=EXAMPLE_CONFIG.parent
    )


class Stack:
    """The bus as the stages see it: what reached the compiler's queue, and the history."""

    def __init__(self, amqp_url: str, database_url: str, sessions):
        self.amqp_url, self.database_url, self.sessions = amqp_url, database_url, sessions
        self.requested: list[str] = []  # build ids whose build.requested reached the compiler
        self.cancels: dict[str, str] = {}  # build id -> reason
        self.client: httpx.AsyncClient | None = None
        self._gateway: contextlib.AsyncExitStack | None = None

    async def open(self) -> None:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel()
        self.exchange = await channel.declare_exchange(
            t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        history = await channel.declare_queue("", exclusive=True)
        await history.bind(self.exchange, "#")
        await history.consume(self._record)

    async def _record(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        """The reporter's history writer, one event at a time; the compiler's and deployer's view."""
        envelope = decode(message.body)
        with self.sessions() as session:
            await to_thread.run_sync(write_batch, session, [envelope])
        if message.routing_key == "build.requested":
            self.requested.append(envelope.buildid)
        elif message.routing_key == "build.cancel.requested":
            self.cancels[envelope.buildid] = envelope.data["reason"]
            await self._deployer_cancel(envelope)
        await message.ack()

    async def _deployer_cancel(self, envelope: Envelope) -> None:
        """The deployer's gate ends every cancelled build: its real handler, on the real DB."""
        ctx = EventContext(
            envelope=envelope,
            consumer=t.DEPLOYER_GATE.name,
            source="deployer",
            _publish=self.publish,
            _loop=asyncio.get_running_loop(),
        )
        await to_thread.run_sync(
            lambda: on_cancel_requested(envelope.event(), ctx, store=GateStore(self.sessions))
        )

    async def publish(self, envelope: Envelope) -> None:
        body = aio_pika.Message(envelope.to_json(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self.exchange.publish(body, routing_key=envelope.routing_key())

    async def start_gateway(self) -> None:
        settings = gateway_settings(self.amqp_url, self.database_url).model_copy(
            update={"concurrency_sweep_s": 3600.0}  # the sweep is tested on its own below
        )
        app = bootstrap(settings, config=concurrency_config())
        self._gateway = contextlib.AsyncExitStack()
        await self._gateway.enter_async_context(app.router.lifespan_context(app))
        self.client = await self._gateway.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        )

    async def stop_gateway(self) -> None:
        assert self._gateway is not None
        await self._gateway.aclose()
        self._gateway = self.client = None

    async def push(self, package: str, branch: str = "main") -> dict:
        payload = github_push(f"refs/heads/{branch}", commit_hash(), full_name=f"example/{package}")
        body, headers = delivery("github", "push", payload, SECRETS["github"], str(uuid.uuid4()))
        reply = await self.client.post("/webhook/github", content=body, headers=headers)
        return {**reply.json(), "code": reply.status_code}

    async def stage_started(self, build_id: str, package: str) -> None:
        await self.publish(
            Envelope.new(StageStarted(stage="config"), source="compiler", build_id=build_id, package=package)
        )

    async def finish(self, build_id: str, package: str, status: str = "succeeded") -> None:
        await self.publish(
            Envelope.new(BuildFinished(status=status), source="deployer", build_id=build_id, package=package)
        )

    def run(self, build_id: str) -> BuildRun:
        with self.sessions() as session:
            return session.scalar(select(BuildRun).where(BuildRun.build_id == build_id))

    def event_times(self, build_id: str) -> dict[str, object]:
        with self.sessions() as session:
            rows = session.execute(
                select(EventLog.routing_key, EventLog.time).where(EventLog.build_id == build_id)
            )
            return dict(rows.all())

    async def until(self, condition, timeout_s: float = 10.0, what: str = "condition") -> None:
        for _ in range(int(timeout_s / 0.05)):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def stack(amqp_url, database_url, sessions):
    s = Stack(amqp_url, database_url, sessions)
    await s.start_gateway()  # declares the topology (the test user may configure)
    await s.open()
    yield s
    if s.client is not None:
        await s.stop_gateway()
    await s.connection.close()


async def settle(s: Stack, build_ids: list[str]) -> None:
    await s.until(lambda: all(s.run(b) is not None for b in build_ids), what=f"history rows of {build_ids}")


async def test_queue_mode_starts_the_second_build_after_the_firsts_end_across_a_restart(stack):
    first, second = await stack.push("cq"), await stack.push("cq")
    assert first["code"] == second["code"] == 202
    (a,), (b,) = first["build_ids"], second["build_ids"]
    assert first["waiting"] == [] and second["waiting"] == [b]
    await settle(stack, [a, b])
    await stack.until(lambda: a in stack.requested, what="a's build.requested")
    await stack.stage_started(a, "cq")
    number_a = stack.run(a).build_number
    held = stack.run(b)
    assert held.status == "queued" and f"behind build {a} (#{number_a})" in held.waiting_on
    detail = (await stack.client.get(f"/builds/{b}")).json()["build"]  # what `kiln status` shows
    assert detail["status"] == "queued" and a in detail["waiting_on"]
    page = (await stack.client.get(f"/ui/builds/{b}")).text  # and the dashboard says why
    assert f'<dd id="waiting-on">waiting for a slot (limit 1) behind build {a} (#{number_a})</dd>' in page

    # Held builds are not the watchdog's, however long they wait (queue wait limit 0 here).
    watchdog = Watchdog(stack.sessions, limits={}, interval_s=1, queue_wait_s=0)
    assert b not in {x.build_id for x in watchdog.find()}

    # The gateway goes away; the first build ends meanwhile; the held build survives both.
    await stack.stop_gateway()
    await stack.finish(a, "cq")
    await asyncio.sleep(0.3)
    assert b not in stack.requested
    await stack.start_gateway()
    await stack.until(lambda: b in stack.requested, what="b's release")
    await stack.until(lambda: stack.run(b).waiting_on == "", what="b released in the history")

    times = stack.event_times(b)
    assert times["build.waiting"] < stack.event_times(a)["build.finished"] < times["build.requested"]
    assert stack.requested.count(b) == 1 and stack.run(a).status == "succeeded"
    # Released, it is the watchdog's again: its queue wait counts from the release.
    assert b in {x.build_id for x in watchdog.find()}
    await stack.finish(b, "cq")


async def test_supersede_mode_cancels_the_running_build_naming_the_newer(stack):
    first = await stack.push("cs")
    (a,) = first["build_ids"]
    await stack.until(lambda: a in stack.requested, what="a's build.requested")
    await stack.stage_started(a, "cs")
    second = await stack.push("cs")
    (b,) = second["build_ids"]
    assert second["superseded"] == [a] and second["waiting"] == []
    await stack.until(lambda: b in stack.requested, what="b starts at once")
    await settle(stack, [b])
    expected = f"superseded by build {b} (#{stack.run(b).build_number})"
    await stack.until(lambda: a in stack.cancels, what="a's cancel")
    assert stack.cancels[a] == expected
    await stack.until(lambda: stack.run(a).status == "cancelled", what="a cancelled")
    assert stack.run(a).error == f"cancelled: {expected}"
    await stack.finish(b, "cs")
    await stack.until(lambda: stack.run(b).status == "succeeded", what="b succeeded")
    assert b not in stack.cancels


async def test_limit_two_other_branches_cancelled_held_builds_and_the_watchdog(stack):
    ids = [(await stack.push("c2"))["build_ids"][0] for _ in range(4)]
    a, b, c, d = ids
    await stack.until(lambda: {a, b} <= set(stack.requested), what="two running")
    assert c not in stack.requested and d not in stack.requested
    other = await stack.push("c2", branch="develop")
    await stack.until(lambda: other["build_ids"][0] in stack.requested, what="another branch is not held")

    # A held build that is cancelled never starts and frees nothing.
    await settle(stack, [c])
    token = {"Authorization": f"Bearer {SECRETS['api']}"}
    assert (await stack.client.post(f"/builds/{c}/cancel", headers=token)).status_code == 202
    await stack.until(lambda: stack.run(c).status == "cancelled", what="c ended by the deployer")
    await asyncio.sleep(0.3)
    assert c not in stack.requested and d not in stack.requested

    # The watchdog ends a stalled running build: that frees its slot too.
    await stack.stage_started(a, "c2")
    await settle(stack, [a])
    watchdog = Watchdog(stack.sessions, limits={"config": 0}, interval_s=1)

    async def publish(event, build_id, package, event_id, attempt):
        await stack.publish(
            Envelope.new(event, source="reporter", build_id=build_id, package=package, event_id=event_id)
        )

    await asyncio.sleep(0.05)
    ended = {x.build_id for x in await watchdog.sweep(publish)}
    assert a in ended
    await stack.until(lambda: d in stack.requested, what="d released by a's time-out")
    assert c not in stack.requested
    for build in (b, d, other["build_ids"][0]):
        await stack.finish(build, "c2")


async def test_a_flood_on_one_branch_is_bounded_and_holds_no_other_branch(stack, sessions):
    limit = gateway_settings("", "").max_builds_per_branch
    replies = [await stack.push("cf", branch="flood") for _ in range(3 * limit)]
    accepted = [r for r in replies if r["code"] == 202]
    assert len(accepted) == limit and {r["code"] for r in replies} == {202, 429}
    with sessions() as session:
        rows = session.scalars(select(ConcurrencySlot).where(ConcurrencySlot.package == "cf")).all()
    assert len(rows) == limit  # one running, the rest held: bounded by KILN_MAX_BUILDS_PER_BRANCH
    other = await stack.push("cf", branch="main")
    assert other["code"] == 202 and other["waiting"] == []
    await stack.until(lambda: other["build_ids"][0] in stack.requested, what="another branch starts")
    for reply in [*accepted, other]:
        await stack.finish(reply["build_ids"][0], "cf")
