"""Live log lines on the real broker: the compiler service ships its module lines while the compile
stage runs, a secret never reaches a line, the gateway streams them over SSE, and a broker that goes
away under a running stage costs lines, never the stage.

The broker "going away" is a TCP proxy in front of the real RabbitMQ that the test cuts: the shared
RabbitMQ itself is never stopped (other suites use it)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import suppress
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import pytest

from services.compiler.bootstrap import bootstrap as compiler_bootstrap
from services.compiler.settings import CompilerSettings
from shared.bus import Bus, live_logs
from shared.bus import topology as t
from shared.bus.live_logs import LogShipper, LogStream
from shared.events import BuildFinished, BuildRequested, Envelope, Event, StageStarted
from shared.events.build import Source
from tests.integration.test_compiler_service import (  # noqa: F401  (monorepo is a fixture)
    OPERATOR_CONFIG,
    bases,
    local_source,
    monorepo,
    request,
    start_service,
)
from tests.integration.test_gateway_live import read_sse
from tests.integration.test_gateway_server import running_gateway

pytestmark = pytest.mark.integration


class Arrivals:
    """Messages from a transient queue bound to kiln.logs and kiln.events, with arrival times."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, queue: aio_pika.abc.AbstractQueue):
        self.connection, self.queue = connection, queue
        self.got: list[tuple[float, str, dict]] = []

    @classmethod
    async def open(
        cls, amqp_url: str, events: tuple[str, ...] = ("stage.#", "compile.completed")
    ) -> Arrivals:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        logs = await channel.declare_exchange(t.LOGS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        bus = await channel.declare_exchange(t.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("", exclusive=True)
        await queue.bind(logs, "log.#")
        for key in events:
            await queue.bind(bus, key)
        return cls(connection, queue)

    async def until(self, build_id: str, done, timeout: float = 150) -> list[tuple[float, str, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            body = json.loads(message.body)
            if body.get("buildid") == build_id:
                self.got.append((time.monotonic(), message.routing_key or "", body))
                if done(self.got):
                    return self.got
        raise AssertionError(f"not done within {timeout}s; got {[k for _, k, _ in self.got]}")

    async def close(self) -> None:
        await self.connection.close()


def compile_finished(got) -> bool:
    return any(k == "stage.finished" and b["data"]["stage"] == "compile" for _, k, b in got)


def batches(got, stage: str | None = None) -> list[tuple[float, dict]]:
    return [
        (at, b) for at, k, b in got if k.startswith("log.") and (stage is None or b["data"]["stage"] == stage)
    ]


async def test_compiler_ships_module_lines_while_the_compile_stage_runs(
    amqp_url,
    database_url,
    tmp_path,
    monorepo,  # noqa: F811
):
    arrivals = await Arrivals.open(amqp_url)
    (monorepo / "core" / "noisy.py").write_text("x = 1\ndef f(:\n    pass\n")
    bus = await start_service(amqp_url, database_url, tmp_path, tmp_path / "fresh-cache")
    try:
        build_id = await request(amqp_url, Source(path=str(monorepo)))
        got = await arrivals.until(build_id, compile_finished)
    finally:
        await bus.stop(grace_s=30)
        await arrivals.close()
    compile_batches = batches(got, "compile")
    finished_at = next(at for at, k, b in got if k == "stage.finished" and b["data"]["stage"] == "compile")
    started_at = next(at for at, k, b in got if k == "stage.started" and b["data"]["stage"] == "compile")
    assert compile_batches, "no live log batch from stage compile"
    assert all(b["type"] == "dev.kiln.log.lines.v1" for _, b in compile_batches)
    assert {k for _, k, _ in got if k.startswith("log.")} == {"log.compile"}  # config, keys print nothing
    # live: batches came while the stage ran (not all at its end), and before its stage.finished
    assert started_at < compile_batches[0][0] < finished_at
    assert len({round(at, 2) for at, _ in compile_batches}) >= 2
    assert [b["data"]["seq"] for _, b in compile_batches] == list(range(1, len(compile_batches) + 1))
    lines = [line for _, b in compile_batches for line in b["data"]["lines"]]
    # first what each platform's base image runs (docs/compiler.md "Target Python"), then the compile
    assert "runs CPython 3.11" in lines[0] and any(line.startswith("compiling ") for line in lines)
    assert any(" ok " in line and "core." in line for line in lines)
    assert any(line.startswith("core/noisy.py:2") for line in lines)  # the error, as it happened
    assert any(" modules: " in line and " failed in " in line for line in lines)


async def test_secrets_never_reach_a_shipped_line(amqp_url, tmp_path):
    """The compiler's own shipper (as bootstrap wires it) on the real broker: its settings' secrets,
    URL credentials, bearer tokens and a private key printed line by line arrive as ***."""
    token, password = "gh-token-" + uuid.uuid4().hex, "reg-pass-" + uuid.uuid4().hex
    settings = CompilerSettings(
        amqp_url=amqp_url,
        git_token=token,
        registry_password=password,
        compiler_cache=str(tmp_path / "cache"),
        artifact_store=f"file://{tmp_path / 'artifacts'}",
        config_path=str(OPERATOR_CONFIG),
    )
    service = compiler_bootstrap(settings, environ={}, with_database=False)
    arrivals = await Arrivals.open(amqp_url, events=())
    bus = await Bus(amqp_url, source="compiler").connect()
    await service.logs.start(bus)
    build_id = str(uuid.uuid4())
    try:
        with service.logs.stream(build_id, stage="compile", package="demo") as log:
            log(f"git fetch with {token}")
            log(f"docker login -p {password} 127.0.0.1:5000")
            log("fetching https://deploy:hunter2hunter2@git.example/repo.git")
            log("Authorization: Bearer abcdefghijklmnopqrstuvwxyz")
            for line in [
                "-----BEGIN OPENSSH PRIVATE KEY-----",
                "b3BlbnNzaC1rZXk=",
                "-----END OPENSSH PRIVATE KEY-----",
            ]:
                log(line)
            log("done")
        got = await arrivals.until(build_id, lambda got: any("done" in b["data"]["lines"] for _, _, b in got))
    finally:
        await bus.stop(grace_s=1)
        await arrivals.close()
    lines = [line for _, _, b in got for line in b["data"]["lines"]]
    shipped = json.dumps(lines)
    for secret in (token, password, "hunter2hunter2", "abcdefghijklmnopqrstuvwxyz", "b3BlbnNzaC1rZXk="):
        assert secret not in shipped
    assert lines == [
        "git fetch with ***",
        "docker login -p *** 127.0.0.1:5000",
        "fetching https://***@git.example/repo.git",
        "Authorization: Bearer ***",
        "[PRIVATE KEY REDACTED]",
        "done",
    ]


class TcpProxy:
    """127.0.0.1:<port> -> RabbitMQ; `cut()` drops every connection and stops listening (the broker
    is gone for the client), `restore()` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    def url(self, amqp_url: str) -> str:
        parts = urlsplit(amqp_url)
        netloc = f"{parts.username}:{parts.password}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))


def proxy_for(amqp_url: str) -> TcpProxy:
    parts = urlsplit(amqp_url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)


class RecordingEmitter:
    """The stage's events are kept here, not published: what goes away in this test is the broker
    under the live log lines, and the events' own path (confirmed publishing) is tested elsewhere."""

    def __init__(self, build_id: str):
        self.build_id = build_id
        self.events: list[Event] = []
        self.envelope = SimpleNamespace(attempt=1, replayonly=None)  # the attempt a cancel is checked for

    def emit(self, event: Event) -> None:
        self.events.append(event)


async def test_a_stage_completes_when_the_broker_goes_away_under_its_log_lines(
    amqp_url,
    tmp_path,
    monorepo,  # noqa: F811
    monkeypatch,
):
    waits: list[float] = []
    original_close = LogStream.close

    def timed_close(stream: LogStream) -> None:
        started = time.perf_counter()
        original_close(stream)
        waits.append(time.perf_counter() - started)

    monkeypatch.setattr(LogStream, "close", timed_close)
    proxy = await proxy_for(amqp_url).start()
    settings = CompilerSettings(
        amqp_url=proxy.url(amqp_url),
        database_url="mysql+pymysql://unused@127.0.0.1:1/unused",
        compiler_cache=str(tmp_path / "fresh-cache"),
        artifact_store=f"file://{tmp_path / 'artifacts'}",
        work_dir=str(tmp_path),
        instance=f"test-{uuid.uuid4().hex[:6]}",
        config_path=str(OPERATOR_CONFIG),
        **bases(),
    )
    environ = {"KILN_KEYS_DIR": str(tmp_path / "keys"), **local_source(monorepo)}
    service = compiler_bootstrap(settings, environ=environ, with_database=False)
    bus = await Bus(proxy.url(amqp_url), source="compiler").connect()
    await service.logs.start(bus)
    build_id = str(uuid.uuid4())
    ctx = RecordingEmitter(build_id)
    handler = service.handlers(t.COMPILER_BUILDS)[BuildRequested]

    async def cut_once_lines_flow() -> None:
        while service.logs.batches_sent == 0:
            await asyncio.sleep(0.01)
        await proxy.cut()

    cutter = asyncio.create_task(cut_once_lines_flow())
    started = time.monotonic()
    try:
        await asyncio.to_thread(
            handler, BuildRequested(package="demo", source=Source(path=str(monorepo))), ctx
        )
    finally:
        cutter.cancel()
        await bus.stop(grace_s=1)
    took = time.monotonic() - started
    stages = {e.stage: e.status for e in ctx.events if type(e).__name__ == "StageFinished"}
    assert stages == {"config": "succeeded", "keys": "succeeded", "compile": "succeeded"}
    completed = next(e for e in ctx.events if type(e).__name__ == "CompileCompleted")
    assert completed.ok and {a.platform for a in completed.artifacts} == {"linux/amd64", "linux/arm64"}
    assert service.logs.lines_lost > 0, "the proxy was cut after the stage's lines stopped: nothing proven"
    # the stage never waited on the dead broker beyond the bounded close of each stage's stream
    assert max(waits) <= live_logs.CLOSE_WAIT_S + 0.3, waits
    assert took < 300


async def test_lines_lost_while_the_broker_is_away_are_counted_in_the_next_batch(amqp_url):
    proxy = await proxy_for(amqp_url).start()
    arrivals = await Arrivals.open(amqp_url, events=())
    bus = await Bus(proxy.url(amqp_url), source="test").connect()
    shipper = LogShipper("test")
    await shipper.start(bus)
    build_id = str(uuid.uuid4())
    stream = shipper.stream(build_id, stage="image", target="web", platform="linux/arm64")
    try:
        stream("before")
        await arrivals.until(build_id, lambda got: len(got) >= 1, timeout=10)
        await proxy.cut()
        # Lines written before the client has noticed the cut go into a dead socket, unconfirmed
        # and uncounted (a documented limit of transient lines); this test is about the lines
        # written once the broker is known to be away.
        for _ in range(100):
            if not bus.connected or shipper._channel.is_closed:
                break
            await asyncio.sleep(0.05)
        for n in range(5):
            stream(f"lost {n}")
        await asyncio.sleep(1)  # a few shipping rounds fail
        await proxy.restore()
        for _ in range(100):  # the robust connection comes back (reconnect interval 2 s)
            if bus.connected and not shipper._channel.is_closed:
                break
            await asyncio.sleep(0.1)
        stream("after")
        got = await arrivals.until(
            build_id, lambda got: any("after" in b["data"]["lines"] for _, _, b in got), timeout=30
        )
    finally:
        stream.close()
        await bus.stop(grace_s=1)
        await arrivals.close()
    assert {key for _, key, _ in got} == {"log.image.arm64"}
    batches = [b["data"] for _, _, b in got]
    arrived = [line for b in batches for line in b["lines"] if line.startswith("lost ")]
    dropped = sum(b["dropped"] for b in batches)
    # Every line written while the broker was away either arrived (aio-pika's robust channel may
    # hold a publish until the connection is back, within the 2 s publish timeout) or is counted
    # as dropped in the next batch, which then starts with the marker: none vanishes uncounted.
    assert len(arrived) + dropped == 5, (arrived, dropped)
    for batch in batches:
        if batch["dropped"]:
            assert batch["lines"][0] == f"[{batch['dropped']} lines dropped]"
    if dropped:
        seqs = [b["seq"] for b in batches]
        assert seqs[-1] - seqs[0] + 1 > len(seqs)  # the failed batch left a gap in seq


async def test_gateway_streams_a_running_compile_s_lines_over_sse(
    amqp_url,
    database_url,
    tmp_path,
    monorepo,  # noqa: F811
):
    """Real compiler service -> kiln.logs -> real gateway -> SSE: `event: log` on the build's
    event stream, interleaved with its events, before the compile's stage.finished."""
    build_id = str(uuid.uuid4())
    async with running_gateway(amqp_url, database_url) as (url, _app):
        bus = await start_service(amqp_url, database_url, tmp_path, tmp_path / "fresh-cache")
        try:
            async with (
                httpx.AsyncClient(base_url=url, timeout=30) as client,
                client.stream("GET", f"/builds/{build_id}/events/stream") as response,
            ):
                received: list[dict] = []
                reader = asyncio.create_task(_collect_sse(response, received))
                await asyncio.sleep(0.3)
                publisher = await Bus(amqp_url, source="gateway").connect()
                request = BuildRequested(package="demo", source=Source(path=str(monorepo)))
                await publisher.emit(request, build_id=build_id, package="demo")
                await publisher.stop(grace_s=5)
                try:
                    messages = await _until_compile_finished(received)
                finally:
                    reader.cancel()
        finally:
            await bus.stop(grace_s=30)
    names = [m["event"] for m in messages]
    logs = [json.loads(m["data"]) for m in messages if m["event"] == "log"]
    assert logs and all(b["buildid"] == build_id for b in logs)
    assert names.index("log") < len(names) - 1  # a log batch before the compile's stage.finished
    compile_lines = [line for b in logs if b["data"]["stage"] == "compile" for line in b["data"]["lines"]]
    assert any(x.startswith("compiling ") for x in compile_lines) and any(
        " modules: " in x for x in compile_lines
    )


async def _collect_sse(response: httpx.Response, into: list[dict]) -> None:
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in current:
                into.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value


async def _until_compile_finished(messages: list[dict], timeout: float = 150) -> list[dict]:
    """The build does not end here (no imager runs), so the stream is read until the compile's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m.get("event") == "stage.finished" and '"stage":"compile"' in m["data"] for m in messages):
            return list(messages)
        await asyncio.sleep(0.2)
    raise AssertionError(f"the compile did not finish on the stream within {timeout} s")


async def test_logs_stream_sends_only_lines_then_end(amqp_url, database_url):
    build_id = str(uuid.uuid4())
    publisher = await Bus(amqp_url, source="test").connect()
    shipper = LogShipper("imager")
    await shipper.start(publisher)
    try:
        async with (
            running_gateway(amqp_url, database_url) as (url, _app),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            # lines shipped before the client connects: the gateway's recent window serves them
            with shipper.stream(build_id, stage="image", target="web", platform="linux/amd64") as early:
                early("Step 1/4 : FROM base")
            await asyncio.sleep(0.5)
            async with client.stream("GET", f"/builds/{build_id}/logs/stream") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                reader = asyncio.create_task(read_sse(response, until="end"))
                await asyncio.sleep(0.3)
                await publisher.publish(
                    Envelope.new(StageStarted(stage="push"), source="t", build_id=build_id)
                )
                with shipper.stream(build_id, stage="push", target="web", platform="linux/amd64") as push:
                    push("pushing 127.0.0.1:5000/kiln/web:1")
                finished = BuildFinished(status="succeeded", duration_ms=5)
                await publisher.publish(Envelope.new(finished, source="t", build_id=build_id))
                messages = await asyncio.wait_for(reader, 20)
    finally:
        await shipper.stop()
        await publisher.stop(grace_s=1)
    assert [m["event"] for m in messages] == ["log", "log", "end"]
    lines = [json.loads(m["data"])["data"]["lines"] for m in messages[:2]]
    assert lines == [["Step 1/4 : FROM base"], ["pushing 127.0.0.1:5000/kiln/web:1"]]
    assert json.loads(messages[-1]["data"]) == {"status": "succeeded"}


async def test_logs_stream_of_a_finished_build_sends_the_stored_log(amqp_url, database_url, sessions):
    from tests.integration.test_gateway_seed import seed_build

    build_id, _ = seed_build(sessions, package="loghist", status="failed")
    async with (
        running_gateway(amqp_url, database_url) as (url, _app),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("GET", f"/builds/{build_id}/logs/stream") as response,
    ):
        messages = await asyncio.wait_for(read_sse(response, until="end"), 20)
        stored = (await client.get(f"/builds/{build_id}/logs")).text
    assert [m["event"] for m in messages] == ["stored", "end"]
    assert json.loads(messages[0]["data"])["lines"] == stored.splitlines()
