"""Several worker processes on one host: `python -m services.gateway --workers N`.

uvicorn's supervisor binds the socket and starts N processes, each a whole gateway
(`bootstrap.worker_app`): its own broker connection, database pool, webhook batching and live
feed (its own transient queue, so every worker's SSE listeners see every event). Correctness
never depended on one process: webhook claims are MariaDB transactions, exactly as between
replicas. Two things must not be per worker:

- Prometheus metrics: values live in files under PROMETHEUS_MULTIPROC_DIR (prometheus_client's
  multiprocess mode) and /metrics answers the sum over every worker.
- HTTP subscriptions: only the worker holding an exclusive lock on a file consumes their queue;
  when it dies the OS drops its lock and another worker takes over within LEASE_RETRY_S.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# How often a worker without the subscriptions lock tries again (the holder may have died).
LEASE_RETRY_S = 2.0
# prometheus_client switches to multiprocess mode when this variable is set at its import.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def available_cpus() -> int:
    """The default number of workers: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


@contextmanager
def worker_environment() -> Iterator[Path]:
    """For the supervisor process: a fresh directory for the workers' metrics files and the
    subscriptions lock, handed to the workers through their environment, removed at the end."""
    runtime = Path(tempfile.mkdtemp(prefix="kiln-gateway-"))
    metrics = runtime / "metrics"
    metrics.mkdir()
    os.environ[METRICS_DIR_VARIABLE] = str(metrics)
    os.environ["KILN_SUBSCRIPTIONS_LOCK"] = str(runtime / "subscriptions.lock")
    try:
        yield runtime
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


class FileLease:
    """An exclusive `flock` on a file: held until released or until the process ends."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self, retry_s: float = LEASE_RETRY_S) -> None:
        while not self.try_acquire():
            await asyncio.sleep(retry_s)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
