"""Fault injection on the whole pipeline (issue 9, item 5), each test with exact counts.

One stack for the file (one platform, linux/amd64, two imager-amd64 workers, the REST trigger).
Every event the pipeline publishes is counted by our own queue bound to `#` on kiln.events
(`EventTap`), independently of the reporter, and compared with what the reporter recorded.

Order matters: the worker kills first (the compiler's on a cold module cache, so a compile is
really in progress), then the poison message and the burst of 20 builds, and last the tests
that stop the shared RabbitMQ and MariaDB — which always restart them in `finally`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import aio_pika
import httpx
import pymysql
import pytest

from scripts.stack import processes
from tests.e2e.conftest import free_port
from tests.e2e.faults_support import EventTap, FaultStack, mariadb_stopped, rabbitmq_stopped

pytestmark = pytest.mark.e2e
SERVICES = ("report", "scheduler", "storage-worker", "webhook")
PLATFORM = "linux/amd64"
COMPILER_DLQ = "kiln.compiler.builds.dlq"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run = uuid.uuid4().hex[:6]
    state = tmp_path_factory.mktemp("faults")
    stack = FaultStack(
        state=state,
        vhost=f"kiln-faults-{run}",
        database=f"kiln_faults_{run}",
        gateway_port=free_port(),
        smtp_port=free_port(),
        prefix=f"kiln-faults-{run}-",
        env=dict(os.environ),
        amd64_imagers=2,
        extra_env={
            # a module cache of our own: the first build really compiles, so it can be interrupted
            "KILN_COMPILER_CACHE": str(state / "compiler-cache"),
            # the proof's stay-up window: shorter keeps 20 builds affordable; still a real run
            "KILN_PROVE_STAY_UP_S": "1",
            # 20 builds of demo's main at once (below): above the default per-branch limit of 5
            "KILN_MAX_BUILDS_PER_BRANCH": "25",
            # ... and running side by side: no concurrency group (its default limit is 1)
            "KILN_CONCURRENCY_LIMIT": "0",
            # every build here is the same content: a reused proof would end the image stage
            # before a worker can be killed in it, and these tests are about real work redone
            "KILN_IMAGER_REUSE_PROOFS": "false",
        },
    )
    stack.start()
    yield stack
    stack.down()
    subprocess.run(["rabbitmqctl", "delete_vhost", stack.vhost], capture_output=True)
    with pymysql.connect(host="127.0.0.1", user="root") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{stack.database}`")


@pytest.fixture(scope="module")
def tap(stack):
    tap = EventTap(stack.amqp_url, "faults-tap")
    yield tap
    tap.close()


def wait_until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if value := condition():
                return value
        except pymysql.err.OperationalError:
            pass  # the database is coming back
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout_s:.0f}s")


def assert_complete(
    stack: FaultStack, tap: EventTap, build_id: str, *, deployed: bool, timeout_s: float = 300
) -> dict:
    """The build succeeded, once, with every event recorded once and every image pushed once."""
    finished = tap.wait_finished(build_id, timeout_s)
    assert finished["data"]["status"] == "succeeded", finished["data"]

    def indexes_attested() -> bool:
        # A multi-arch index is attested beside the deploy, not before it (not a gate fact): its
        # events may land after build.finished, and every event is counted below.
        attests = [e for e in tap.of_build(build_id, "stage.finished") if e["data"]["stage"] == "attest"]
        return sum(1 for e in attests if e["data"].get("platform") is None) >= len(SERVICES)

    wait_until(indexes_attested, 120, f"every index of {build_id} attested")
    published = {e["id"] for e in tap.of_build(build_id)}

    def recorded() -> set[str] | None:
        ids = [r[0] for r in stack.query("SELECT event_id FROM event_log WHERE build_id=%s", build_id)]
        return set(ids) if len(ids) >= len(published) else None

    wait_until(recorded, 120, f"every event of {build_id} in event_log")
    (total, distinct), *_ = stack.query(
        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM event_log WHERE build_id=%s", build_id
    )
    assert total == distinct == len(published)
    assert recorded() == published
    assert len(tap.of_build(build_id, "build.finished")) == 1
    assert stack.query(
        "SELECT COUNT(*) FROM event_log WHERE build_id=%s AND routing_key='build.finished'", build_id
    ) == [(1,)]
    assert len(tap.of_build(build_id, "image.pushed")) == len(SERVICES)
    rows = stack.query("SELECT target, platform FROM log_build_image WHERE build_id=%s", build_id)
    images = sorted(row for row in rows if row[1] == PLATFORM)
    indexes = sorted(target for target, platform in rows if platform != PLATFORM)  # one per service
    assert (images, indexes) == ([(s, PLATFORM) for s in SERVICES], list(SERVICES))
    scans = stack.query("SELECT COUNT(*) FROM log_build_scan WHERE build_id=%s", build_id)
    assert scans == [(len(SERVICES),)]
    wait_until(
        lambda: (
            stack.query("SELECT status FROM log_build_run WHERE build_id=%s", build_id) == [("succeeded",)]
        ),
        30,
        f"{build_id} recorded as succeeded",
    )
    deploys = [e for e in tap.of_build(build_id, "stage.finished") if e["data"]["stage"] == "deploy"]
    assert [e["data"]["status"] for e in deploys] == (["succeeded"] if deployed else [])
    return {"events": total, "images": len(images), "indexes": len(indexes), "build.finished": 1}


def open_jobs(tap: EventTap, build_id: str, stage: str) -> list[tuple]:
    """Jobs of `stage` started and not finished yet: (target, platform)."""

    def key(e):
        return (e["data"].get("target"), e["data"].get("platform"))

    started = {key(e) for e in tap.of_build(build_id, "stage.started") if e["data"]["stage"] == stage}
    done = {key(e) for e in tap.of_build(build_id, "stage.finished") if e["data"]["stage"] == stage}
    return sorted(started - done, key=str)


def redone(tap: EventTap, build_id: str, stage: str) -> int:
    """stage.started events published more than once under the same id: a redelivered job re-ran
    and re-emitted them (ids derive from the cause), which the reporter must count once."""
    return sum(
        1
        for e in tap.of_build(build_id, "stage.started")
        if e["data"]["stage"] == stage and tap.copies[e["id"]] > 1
    )


def kill_mid_job(stack, tap, *, process: str, stage: str, after_s: float, deployed=False) -> dict:
    build_id = stack.trigger_rest(skip_deploy=not deployed)
    tap.wait_stage(build_id, stage, "started", timeout_s=240)
    time.sleep(after_s)
    in_hand = open_jobs(tap, build_id, stage)
    killed = stack.kill9(process)
    try:
        assert in_hand, f"{stage} had finished before {process} was killed: not mid-job"
        assert process not in processes.running(stack.state)
    finally:
        # Restarted whatever the outcome: the module shares one stack, and a worker left dead
        # here would fail every later test for a reason that is not theirs.
        restarted = stack.restart(process)
    counts = assert_complete(stack, tap, build_id, deployed=deployed)
    counts["redone"] = redone(tap, build_id, stage)
    print(f"\n{process} pid {killed} killed with {in_hand} in hand, restarted as {restarted}: {counts}")
    return counts


# -- kill -9 each kind of worker in the middle of a job -------------------------------------------


def test_compiler_killed_mid_compile(stack, tap):
    counts = kill_mid_job(stack, tap, process="compiler", stage="compile", after_s=1.0)
    assert counts["redone"] == 1  # the redelivered build.requested compiled again


def test_imager_killed_mid_image(stack, tap):
    counts = kill_mid_job(stack, tap, process="imager-amd64", stage="image", after_s=0.5)
    assert counts["redone"] >= 1


def test_scanner_killed_mid_scan(stack, tap):
    counts = kill_mid_job(stack, tap, process="scanner", stage="scan", after_s=0.0)
    assert counts["redone"] >= 1


def test_deployer_killed_mid_deploy(stack, tap):
    counts = kill_mid_job(stack, tap, process="deployer", stage="deploy", after_s=1.0, deployed=True)
    assert counts["redone"] == 1


def test_reporter_killed_while_recording(stack, tap):
    # The reporter takes up to 200 events at a time: killed while images are being built, it
    # holds the build's first events unacked; its successor must record each exactly once.
    kill_mid_job(stack, tap, process="reporter", stage="image", after_s=0.5)


# -- a poison message -------------------------------------------------------------------------------


async def _publish(amqp_url: str, routing_key: str, body: bytes) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("kiln.events", ensure=False)
        await exchange.publish(
            aio_pika.Message(body=body, content_type="application/cloudevents+json"),
            routing_key=routing_key,
        )


async def _drain(amqp_url: str, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    taken = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    return taken


def test_poison_messages_are_dead_lettered_and_the_next_build_is_unaffected(stack, tap):
    asyncio.run(_publish(stack.amqp_url, "build.requested", b"{this is not json"))
    requested = json.loads(json.dumps(tap.wait_for(lambda e: e["_rk"] == "build.requested", 5, "a request")))
    requested.pop("_rk")
    invalid = {**requested, "id": str(uuid.uuid4()), "buildid": str(uuid.uuid4()), "data": {"package": 42}}
    asyncio.run(_publish(stack.amqp_url, "build.requested", json.dumps(invalid).encode()))
    dead: list = []
    wait_until(
        lambda: dead.extend(asyncio.run(_drain(stack.amqp_url, COMPILER_DLQ))) or len(dead) >= 2,
        30,
        "both poison messages in the compiler's dead-letter queue",
    )
    assert len(dead) == 2
    reasons = sorted(str(m.headers["x-kiln-error"]) for m in dead)
    assert all(m.headers["x-kiln-error-kind"] == "invalid" for m in dead), reasons
    assert reasons[0].startswith("invalid event") and reasons[1].startswith("invalid event"), reasons
    assert "build.requested" in " ".join(reasons) or "package" in " ".join(reasons), reasons
    build_id = stack.trigger_rest()
    counts = assert_complete(stack, tap, build_id, deployed=False)
    assert asyncio.run(_drain(stack.amqp_url, COMPILER_DLQ)) == []
    print(f"\npoison: 2 dead-lettered ({reasons}); next build {counts}")


# -- 20 builds at once ------------------------------------------------------------------------------


def test_twenty_builds_at_once_all_complete_with_exact_counts(stack, tap):
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        build_ids = list(pool.map(lambda _: stack.trigger_rest(), range(20)))
    assert len(set(build_ids)) == 20
    totals = dict.fromkeys(("events", "images", "indexes", "build.finished"), 0)
    for build_id in build_ids:
        for name, count in assert_complete(stack, tap, build_id, deployed=False, timeout_s=420).items():
            totals[name] += count
    assert totals["build.finished"] == 20 and totals["images"] == 20 * len(SERVICES)
    print(f"\n20 builds in {time.monotonic() - started:.1f}s: {totals}")


# -- the shared infrastructure goes away mid-build --------------------------------------------------


def unacked_queues(stack: FaultStack) -> str:
    listing = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "-p", stack.vhost, "name", "messages_unacknowledged"],
        capture_output=True,
        text=True,
    ).stdout
    return ", ".join(line for line in listing.splitlines() if not line.rstrip().endswith("\t0"))


def test_rabbitmq_restart_mid_build(stack, tap):
    build_id = stack.trigger_rest()
    tap.wait_stage(build_id, "image", "started")
    with rabbitmq_stopped():
        time.sleep(3)
    try:  # a warm build takes ~10 s: two minutes is ample, and keeps the file within its budget
        counts = assert_complete(stack, tap, build_id, deployed=False, timeout_s=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; messages held unacked: {unacked_queues(stack)}") from None
    dead = sorted(set(processes.running(stack.state)) ^ {p.name for p in stack.process_table()})
    assert dead == [], f"exited after the broker restart: {dead}"
    print(f"\nbroker restarted mid-build: {counts}")


def test_mariadb_down_30s_mid_build(stack, tap):
    build_id = stack.trigger_rest(skip_deploy=False)
    tap.wait_stage(build_id, "image", "started")
    with mariadb_stopped():
        time.sleep(30)
    # The reporter held what it could not write and catches up with everything published so far.
    published = {e["id"] for e in tap.of_build(build_id)}
    wait_until(
        lambda: (
            published
            <= {r[0] for r in stack.query("SELECT event_id FROM event_log WHERE build_id=%s", build_id)}
        ),
        60,
        f"the {len(published)} events published until the database came back, in event_log",
    )
    try:
        counts = assert_complete(stack, tap, build_id, deployed=True, timeout_s=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; messages held unacked: {unacked_queues(stack)}") from None
    dead = sorted(set(processes.running(stack.state)) ^ {p.name for p in stack.process_table()})
    assert dead == [], f"exited after the database outage: {dead}"
    token = stack.secrets()["api_token"]
    response = httpx.get(
        f"{stack.gateway_url}/builds/{build_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200 and response.json()["build"]["status"] == "succeeded"
    print(f"\ndatabase down 30s mid-build: {len(published)} events caught up at once; {counts}")


# -- a stalled worker: the watchdog ends the build ----------------------------------------------------


def test_a_stalled_scanner_is_ended_by_the_watchdog_and_names_its_queue(stack, tap):
    """SIGSTOP the scanner (alive, connected, holding its messages: what a hung worker looks
    like to the broker), with the reporter's queue wait limit cut to 10 s; the build must end
    failed, naming the stage and the queue it waited on, and nothing else may end it."""
    scanner = stack.pid("scanner")
    stack.kill9("reporter")
    stack.extra_env.update(KILN_WATCHDOG_QUEUE_WAIT_S="10", KILN_WATCHDOG_INTERVAL_S="1")
    stack.restart("reporter")
    os.killpg(scanner, signal.SIGSTOP)
    try:
        build_id = stack.trigger_rest()
        finished = tap.wait_for(
            lambda e: e.get("buildid") == build_id and e["_rk"] == "build.finished", 180, "build.finished"
        )
    finally:
        os.killpg(scanner, signal.SIGCONT)
        stack.kill9("reporter")
        for key in ("KILN_WATCHDOG_QUEUE_WAIT_S", "KILN_WATCHDOG_INTERVAL_S"):
            stack.extra_env.pop(key)
        stack.restart("reporter")
    data = finished["data"]
    assert (data["status"], data["failed_stage"]) == ("failed", "scan"), data
    assert (
        data["error"].startswith("timed out in scan (") and "waiting on kiln.scanner.images" in data["error"]
    )
    assert finished["source"] == "/kiln/reporter"
    # The resumed scanner scans what it held; the build stays ended, once.
    time.sleep(5)
    assert len(tap.of_build(build_id, "build.finished")) == 1
    wait_until(
        lambda: stack.query("SELECT status FROM log_build_run WHERE build_id=%s", build_id) == [("failed",)],
        30,
        "the history to show the build failed",
    )
    print(f"\nwatchdog: {data['error']}")
