"""Database down for longer than the bus's whole retry budget (> 30 s): the history consumer holds
the messages unacked, then catches up when MariaDB is back; nothing lost, nothing dead-lettered.

MariaDB is shared with other tests, so the outage is made real between the reporter and the
database: the reporter connects through a TCP relay that this test cuts and restores."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from sqlalchemy import func, select

from services.reporter.bootstrap import bootstrap
from services.reporter.settings import ReporterSettings
from shared.bus import Bus
from shared.bus import topology as t
from shared.db import make_engine, make_sessions
from shared.db.models import EventLog
from tests.unit.test_reporter_stream import full_build_stream

pytestmark = pytest.mark.integration
OUTAGE_S = 32


class Relay:
    """127.0.0.1:<port> -> the database; `cut()` drops every connection and stops listening."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._pipes):
            writer.close()

    async def _accept(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._pipes |= {writer, up_writer}
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader, writer):
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._pipes.discard(writer)


def count(sessions, build_id: str) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(EventLog).where(EventLog.build_id == build_id))


async def test_history_survives_a_database_outage(amqp_url, database_url, sessions):
    parts = urlsplit(database_url)
    relay = Relay(parts.hostname, parts.port or 3306)
    await relay.start()
    relayed_url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    engine = make_engine(relayed_url, connect_args={"connect_timeout": 2})
    reporter = bootstrap(ReporterSettings(database_url=relayed_url), sessions=make_sessions(engine))
    reporter.parts["history"].retry_max_s = 2.0
    bus = await Bus(amqp_url, source="reporter").connect()
    build_id = str(uuid.uuid4())
    stream = full_build_stream(build_id)
    try:
        await bus.consume(t.REPORTER_HISTORY, reporter.handlers(t.REPORTER_HISTORY))
        await relay.cut()
        for envelope in stream:
            await bus.publish(envelope)
        await asyncio.sleep(OUTAGE_S)
        assert await asyncio.to_thread(count, sessions, build_id) == 0
        assert reporter.parts["history"].outage_retries >= 5
        await relay.start()  # the database is back, on the same address
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while await asyncio.to_thread(count, sessions, build_id) < len(stream):
            assert loop.time() < deadline, "the reporter did not catch up"
            await asyncio.sleep(0.2)
    finally:
        await bus.stop(grace_s=5)
        await reporter.close()
        engine.dispose()
    assert await asyncio.to_thread(count, sessions, build_id) == len(stream)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(t.REPORTER_HISTORY.dead_letter_queue, passive=True)
        retry = await channel.declare_queue(t.REPORTER_HISTORY.retry_queue, passive=True)
        assert dlq.declaration_result.message_count == 0
        assert retry.declaration_result.message_count == 0
