"""Coalescing concurrent database work into one transaction per batch.

Under a burst of webhook deliveries every request needs the same few writes (reserve its
redelivery keys, take build numbers, mark keys published). One transaction per request means one
commit (an fsync) each, and build numbers queue on the counter's row lock. Requests that arrive
while a batch is in the database simply form the next batch: latency stays near one commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from anyio import to_thread

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`await submit(items)` → results for those items, computed by `bulk(all waiting items)`."""

    def __init__(self, bulk: Callable[[list[T]], list[R]]):
        self._bulk = bulk
        self._pending: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, items: list[T]) -> list[R]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._worker is not None and self._worker.get_loop() is not loop:
            # The app is served by a new event loop (tests start one per client): what waited on
            # the old one can never be answered.
            self._pending, self._worker = [], None
        future: asyncio.Future[list[R]] = loop.create_future()
        self._pending.append((items, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            flat = [item for items, _ in batch for item in items]
            try:
                results = await to_thread.run_sync(self._bulk, flat)
            except Exception as exc:  # every waiter sees the failure (a webhook answers 503)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for items, future in batch:
                if not future.done():
                    future.set_result(results[offset : offset + len(items)])
                offset += len(items)
