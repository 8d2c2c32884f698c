"""Runs a service's consumers until SIGTERM/SIGINT, then shuts down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from shared.bus.connection import Bus

log = logging.getLogger("kiln.bus")


async def run_service(bus: Bus, start: Callable[[Bus], Awaitable[None]]) -> None:
    """Connect, let `start` register consumers, serve until a stop signal, finish in-hand work."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bus.request_stop)
    await bus.connect()
    await start(bus)
    log.info("%s ready", bus.source)
    await bus.wait_stopped()
    log.info("%s stopping: finishing the message in hand", bus.source)
    await bus.stop()
