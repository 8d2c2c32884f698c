"""Runs a service's consumers until SIGTERM/SIGINT, then shuts down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from shared.bus.connection import Bus
from shared.bus.health import serve_health

log = logging.getLogger("kiln.bus")


async def run_service(
    bus: Bus, start: Callable[[Bus], Awaitable[None]], *, health_port: int | None = None
) -> None:
    """Connect, let `start` register consumers, serve until a stop signal, finish in-hand work.

    With `health_port`, also answer `/healthz` and `/readyz` there (KILN_HEALTH_PORT)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bus.request_stop)
    health = await serve_health(health_port, lambda: bus.connected) if health_port else None
    await bus.connect()
    await start(bus)
    log.info("%s ready", bus.source)
    await bus.wait_stopped()
    log.info("%s stopping: finishing the message in hand", bus.source)
    await bus.stop()
    if health is not None:
        health.close()
