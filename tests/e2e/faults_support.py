"""What the fault-injection tests need around the stack: a stack with two amd64 imagers and no
arm64 one, kill -9 and restart of one process, an independent tap on every published event,
the REST trigger, and stopping/starting the shared RabbitMQ and MariaDB (always restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aio_pika
import httpx
import pymysql

from scripts.stack import processes
from scripts.stack.example import git
from scripts.stack.layout import Stack
from scripts.stack.processes import Process

Envelope = dict  # a published event as decoded JSON, plus "_rk" (its routing key)


@dataclass
class FaultStack(Stack):
    """The stack with one platform (amd64) served by `amd64_imagers` worker processes."""

    amd64_imagers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)  # KILN_* settings for every service

    def service_env(self) -> dict[str, str]:
        return {**super().service_env(), **self.extra_env}

    def process_table(self) -> list[Process]:
        table = [p for p in super().process_table() if p.name != "imager-arm64"]
        imager = next(p for p in table if p.name == "imager-amd64")
        extra = [Process(f"imager-amd64-{n}", imager.args) for n in range(2, self.amd64_imagers + 1)]
        # A second attester: one signs every image and index of twenty builds serially, the suite's
        # slowest path. It shares the first one's credentials, not its health port.
        attester = next(p for p in table if p.name == "attester")
        env = {k: v for k, v in attester.env.items() if k != "KILN_HEALTH_PORT"}
        return [*table, *extra, Process("attester-2", attester.args, env)]

    def pid(self, name: str) -> int:
        return processes.running(self.state)[name]

    def kill9(self, name: str) -> int:
        """SIGKILL the process and its children (its own session): no chance to ack or clean up."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # our child when started by this test process: reap it
        deadline = time.monotonic() + 10
        while name in processes.running(self.state) and time.monotonic() < deadline:
            time.sleep(0.1)
        return pid

    def restart(self, name: str) -> int:
        process = next(p for p in self.process_table() if p.name == name)
        return processes.start(process, self.state, self.service_env())

    def trigger_rest(self, *, skip_deploy: bool = True, platform: str = "linux/amd64") -> str:
        """`POST /builds` (the CLI's trigger) for the example repository's HEAD on main."""
        body = {
            "package": "demo",
            "ref": "main",
            "platform": platform,
            "skip_deploy": skip_deploy,
            "repo_url": f"file://{self.repo}",
            "commit": git(self.repo, "rev-parse", "HEAD"),
        }
        response = httpx.post(
            f"{self.gateway_url}/builds",
            json=body,
            headers={"Authorization": f"Bearer {self.secrets()['api_token']}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        (build_id,) = response.json()["build_ids"]
        return build_id

    def query(self, sql: str, *params: object) -> list[tuple]:
        with (
            pymysql.connect(host="127.0.0.1", user="root", database=self.database) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(sql, params)
            return list(cur.fetchall())


class EventTap:
    """Our own durable queue bound to `#` on kiln.events: every event the pipeline published,
    counted independently of the reporter. Survives a broker restart (durable queue, persistent
    messages, robust connection); a redelivered copy is counted once (by event id)."""

    def __init__(self, amqp_url: str, queue: str):
        self.amqp_url, self.queue = amqp_url, queue
        self.by_id: dict[str, Envelope] = {}
        self.copies: dict[str, int] = {}  # event id -> how many times it was published/delivered
        self.undecodable = 0
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._run(),), daemon=True
        )
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the event tap could not bind its queue")

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        connection = await aio_pika.connect_robust(self.amqp_url, reconnect_interval=1)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=500)
            queue = await channel.declare_queue(self.queue, durable=True)
            await queue.bind("kiln.events", "#")
            await queue.consume(self._on_message)
            self._ready.set()
            await self._stop.wait()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        with self._changed:
            try:
                envelope = json.loads(message.body)
                envelope["_rk"] = message.routing_key
                self.by_id.setdefault(envelope["id"], envelope)
                self.copies[envelope["id"]] = self.copies.get(envelope["id"], 0) + 1
            except (ValueError, KeyError, TypeError):
                self.undecodable += 1
            self._changed.notify_all()
        await message.ack()

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # -- reading ---------------------------------------------------------------------------

    def of_build(self, build_id: str, routing_key: str | None = None) -> list[Envelope]:
        with self._changed:
            events = [e for e in self.by_id.values() if e.get("buildid") == build_id]
        return [e for e in events if routing_key is None or e["_rk"].startswith(routing_key)]

    def wait_for(self, matches: Callable[[Envelope], bool], timeout_s: float, what: str) -> Envelope:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((e for e in self.by_id.values() if matches(e)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout_s:.0f}s")
                self._changed.wait(left)

    def wait_stage(self, build_id: str, stage: str, status: str, timeout_s: float = 180) -> Envelope:
        key = "stage.started" if status == "started" else "stage.finished"

        def matches(e: Envelope) -> bool:
            data = e.get("data", {})
            return (
                e.get("buildid") == build_id
                and e["_rk"].startswith(key)
                and data.get("stage") == stage
                and (status == "started" or data.get("status") == status)
            )

        return self.wait_for(matches, timeout_s, f"{stage} {status} of {build_id}")

    def wait_finished(self, build_id: str, timeout_s: float = 300) -> Envelope:
        return self.wait_for(
            lambda e: e.get("buildid") == build_id and e["_rk"].startswith("build.finished"),
            timeout_s,
            f"build.finished of {build_id}",
        )


# -- the shared infrastructure (other stacks on this machine feel it too: keep it short) --------


def wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f}s")


def wait_port_closed(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.2)
    raise AssertionError(f"127.0.0.1:{port} still answers after {timeout_s:.0f}s")


@contextlib.contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=180)
        subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=180)
        wait_port(5672, 60)


@contextlib.contextmanager
def mariadb_stopped() -> Iterator[None]:
    subprocess.run(["mysqladmin", "-uroot", "shutdown"], check=True, capture_output=True, timeout=120)
    wait_port_closed(3306, 60)
    try:
        yield
    finally:
        subprocess.run(
            ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
            check=True,
            capture_output=True,
        )
        wait_port(3306, 120)
