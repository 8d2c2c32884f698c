"""Batched ingestion behind a per-message ack policy.

The bus acks each message when its handler returns. The history handler therefore does not
write: it parks its envelope in the current batch and awaits the batch's future. A single
writer task closes a batch at `max_batch` envelopes or `max_wait_ms` after its first one,
writes it in ONE transaction (in a worker thread), then resolves every future: only then do
the handlers return and the bus acks. Prefetch (200) is larger than a batch (100), so the next
batch fills while the previous one is written.

Database down: the writer keeps retrying the same batch (back-off up to `retry_max_s`) and never
fails the handlers, so the messages stay unacked in RabbitMQ (not in the bus's bounded retry
queue) for as long as the outage lasts, and the reporter catches up when MariaDB returns.
A batch that fails for another reason (a bad row) is written event by event so only the bad
event fails (PermanentError -> its dead-letter queue) and the rest of the batch is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from sqlalchemy.exc import InterfaceError, OperationalError

from services.reporter.history_process import DatabaseAway
from shared.bus import EventContext, PermanentError
from shared.events import Envelope, Event

log = logging.getLogger("kiln.reporter.history")

# Connection-level failures: the database is away, not the data wrong.
DATABASE_AWAY = (OperationalError, InterfaceError, DatabaseAway)

WriteBatch = Callable[[list[Envelope]], int]


class BatchingIngestor:
    def __init__(
        self,
        write: WriteBatch,
        *,
        max_batch: int = 100,
        max_wait_ms: int = 100,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 5.0,
        executor: Executor | None = None,
    ):
        self._write = write
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._pending: list[tuple[Envelope, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # A process (see history_process.py), or else a thread of its own: the default pool is
        # busy with the bus's per-message guard calls.
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-writer")
        self.written = 0
        self.batches = 0
        self.outage_retries = 0
        self.write_seconds = 0.0

    async def handle(self, event: Event, ctx: EventContext) -> None:
        """The handler for every event type on the history queue."""
        await self.submit(ctx.envelope)

    async def submit(self, envelope: Envelope) -> None:
        self._ensure_writer()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((envelope, future))
        self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        await future

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name="reporter-history-writer")

    async def _in_thread(self, envelopes: list[Envelope]) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._write, envelopes)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=self.max_wait_s)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if len(self._pending) < self.max_batch:
                self._full.clear()
            if not self._pending:
                self._arrived.clear()
            if batch:
                await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[Envelope, asyncio.Future[None]]]) -> None:
        envelopes = [envelope for envelope, _ in batch]
        delay = self.retry_initial_s
        while True:
            try:
                started = time.perf_counter()
                await self._in_thread(envelopes)
                self.write_seconds += time.perf_counter() - started
                break
            except DATABASE_AWAY as exc:
                self.outage_retries += 1
                log.warning("database unavailable (%s); holding %d event(s), retry in %.1fs",
                            type(exc).__name__, len(batch), delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(self.retry_max_s, delay * 2)
            except Exception:
                log.exception("batch of %d failed; writing its events one by one", len(batch))
                await self._write_one_by_one(batch)
                return
        self.batches += 1
        self.written += len(batch)
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    async def _write_one_by_one(self, batch: list[tuple[Envelope, asyncio.Future[None]]]) -> None:
        for envelope, future in batch:
            try:
                await self._in_thread([envelope])
            except DATABASE_AWAY:
                # Gone mid-way: hand the rest back to the normal path, which waits for it.
                await self._write_batch([(envelope, future)])
                continue
            except Exception as exc:
                if not future.done():
                    future.set_exception(PermanentError(f"cannot store event {envelope.id}: {exc}"))
                continue
            self.written += 1
            if not future.done():
                future.set_result(None)
